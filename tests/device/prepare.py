"""Here (CPU): prepare build/device/ for the GPU checks on the lent H100 (tests/device/README.md).

    .venv/bin/python tests/device/prepare.py

writes the images, Ultralytics' own predictions on them (the reference the device compares with:
Ultralytics cannot run there), the network as Ultralytics' TorchScript export, and the GPU model
repository: preprocess on the GPU -> the torch stand-in detector -> the ensemble.
"""

import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import COCO_IMAGES, ultralytics_assets, weights_of  # noqa: E402
from yolo_triton.benchmarks.bench import detector_input  # noqa: E402
from yolo_triton.benchmarks.perf_input import perf_input  # noqa: E402
from yolo_triton.contract import VARIANTS, TensorSpec  # noqa: E402
from yolo_triton.repository import ensemble_config, model_config, preprocess_config  # noqa: E402

OUT = ROOT / "build" / "device"
MODEL = "yolov11_nano"


def main():
    from ultralytics import YOLO

    v = VARIANTS[MODEL]
    shutil.rmtree(OUT, ignore_errors=True)
    images = OUT / "images"
    images.mkdir(parents=True)
    for path in [*sorted(COCO_IMAGES.glob("*.jpg")), ultralytics_assets() / "bus.jpg", ultralytics_assets() / "zidane.jpg"]:
        shutil.copy(path, images / path.name)

    model = YOLO(str(weights_of(MODEL)))
    reference = {}
    for path in sorted(images.iterdir()):
        r = model.predict(str(path), conf=v.conf, iou=v.iou, imgsz=v.imgsz, max_det=v.max_detections, rect=False, verbose=False)[0]
        reference[path.name] = {"boxes": r.boxes.xyxy.tolist(), "scores": r.boxes.conf.tolist(), "classes": r.boxes.cls.int().tolist()}
    (OUT / "reference.json").write_text(json.dumps({"model": MODEL, "weights": v.weights, "detections": reference}))

    repo = OUT / "model_repository"
    for name, config in ((v.name, ensemble_config(v)), ("preprocess", preprocess_config([v], "tensorrt", "gpu"))):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config)
    shutil.copy(ROOT / "yolo_triton" / "triton_models" / "preprocess.py", repo / "preprocess" / "1" / "model.py")
    detector = repo / v.detector
    (detector / "1").mkdir(parents=True)
    parameters = {"FORCE_CPU_ONLY_INPUT_TENSORS": "no", "conf": v.conf, "iou": v.iou, "max_detections": v.max_detections}
    (detector / "config.pbtxt").write_text(model_config(v.detector, 'backend: "python"', v.max_batch_size, v.detector_inputs, v.outputs,
                                                  v.preferred_batch_sizes, kind="KIND_GPU", parameters=parameters))
    shutil.copy(ROOT / "tests" / "device" / "torch_detector.py", detector / "1" / "model.py")
    network = YOLO(str(weights_of(MODEL))).export(format="torchscript", imgsz=v.imgsz)
    shutil.move(network, detector / "1" / "model.torchscript")
    # the classical path's server side: the same network alone, FP32 in, output0 out (host memory)
    bare = repo / f"{v.name}_bare"
    (bare / "1").mkdir(parents=True)
    (bare / "config.pbtxt").write_text(model_config(
        bare.name, 'backend: "python"', v.max_batch_size, (TensorSpec("images", "TYPE_FP32", (3, v.imgsz, v.imgsz)),),
        (TensorSpec("output0", "TYPE_FP32", (4 + v.num_classes, 8400)),), v.preferred_batch_sizes, kind="KIND_GPU"))
    shutil.copy(ROOT / "tests" / "device" / "torch_bare_network.py", bare / "1" / "model.py")
    os.link(detector / "1" / "model.torchscript", bare / "1" / "model.torchscript")
    # perf_analyzer data: the photos for the ensemble and preprocess, 16 letterboxed for the detector
    photos = sorted(images.iterdir())
    (OUT / "perf_input.json").write_text(json.dumps(perf_input(photos)))
    detector_input(photos[:16], v, OUT / "detector_input.json")
    print(f"{OUT}: {len(reference)} images, {sum(len(d['scores']) for d in reference.values())} reference detections")


if __name__ == "__main__":
    main()
