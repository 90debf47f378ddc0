#!/bin/bash
# On the H100, after the installs of tests/device/README.md: the GPU checks, results under $OUT.
#   STEPS=ensemble,bench bash tests/device/run.sh   (steps: tests/device/gpu_checks.py)
set -euo pipefail
. /opt/device-env.sh
site=/opt/stubenv/lib/python3.12/site-packages
echo "$PWD" > $site/yolo_triton_source.pth  # the stubs import yolo_triton from this checkout
# PyTorch of the image, without its env's NumPy 2 (and what is built on it), for the pytorch-gpu
# detector and the classical client's NMS; Ultralytics (/opt/ultra) to load the weights
mkdir -p /opt/torchshim
for p in /opt/torch/.venv/lib/python3.12/site-packages/*; do
  case "$(basename "$p")" in numpy*|scipy*|cupy*|cv2*|opencv*|fastrlock*|onnxruntime*|_distutils_hack|distutils-precedence.pth) ;; *) ln -sfn "$p" /opt/torchshim/ ;; esac
done
printf '/opt/torchshim\n/opt/ultra\n' > $site/zz_torch_ultralytics.pth  # after the stub env's own packages
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
/opt/stubenv/bin/python3 tests/device/gpu_checks.py "$OUT" "${STEPS:-ensemble,bench}"
