"""Ultralytics' own predict loop on the GPU, the baseline of the GPU benchmark: the photos read from
disk by Ultralytics, batch 1 (one call per photo), 32 and 64 (one call per that many paths), FP16 and
FP32, each after one warm-up pass. Prints one JSON line: images/s per setting and the versions; with
REFERENCE_OUT, also writes there its FP32 detections of each photo (its default predict on the GPU,
the accuracy reference of the served ensemble).

    python ultralytics_predict.py WEIGHTS IMAGE_DIR   (an env with torch, torchvision, ultralytics)
"""

import json
import os
import sys
import time
from pathlib import Path

import torch
import ultralytics
from ultralytics import YOLO

CONF, IOU, MAX_DET, IMGSZ = 0.25, 0.45, 100, 640  # the served yolov11_nano's row of the variant table


def main():
    weights, folder = sys.argv[1], Path(sys.argv[2])
    paths = [str(p) for p in sorted(folder.glob("*.jpg"))]
    model = YOLO(weights)
    kwargs = dict(conf=CONF, iou=IOU, max_det=MAX_DET, imgsz=IMGSZ, device=0, rect=False, verbose=False)
    result = {
        "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
        "gpu": torch.cuda.get_device_name(0),
        "images": len(paths),
    }
    for precision, half in (("fp16", True), ("fp32", False)):
        for batch in (1, 32, 64):
            chunks = [paths[i : i + batch] for i in range(0, len(paths), batch)]
            for chunk in chunks:  # warm-up pass
                model.predict(chunk, batch=batch, half=half, **kwargs)
            torch.cuda.synchronize()
            start = time.perf_counter()
            for chunk in chunks:
                model.predict(chunk, batch=batch, half=half, **kwargs)
            torch.cuda.synchronize()
            result[f"{precision}_batch_{batch}_images_per_s"] = round(len(paths) / (time.perf_counter() - start), 1)
    if os.environ.get("REFERENCE_OUT"):
        found = {}
        for path in paths:
            r = model.predict(path, half=False, **kwargs)[0]
            found[Path(path).name] = {
                "boxes": r.boxes.xyxy.tolist(),
                "scores": r.boxes.conf.tolist(),
                "classes": r.boxes.cls.int().tolist(),
            }
        Path(os.environ["REFERENCE_OUT"]).write_text(json.dumps(found))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
