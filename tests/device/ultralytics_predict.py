"""Ultralytics' own predict loop on the GPU, the baseline of the GPU benchmark: FP16, the photos
read from disk by Ultralytics, batch 1 (one call per photo) and batch 32 (one call per 32 paths),
after one warm-up pass. Prints one JSON line: images/s per batch size and the versions.

    python ultralytics_predict.py WEIGHTS IMAGE_DIR   (an env with torch, torchvision, ultralytics)
"""

import json
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
    kwargs = dict(conf=CONF, iou=IOU, max_det=MAX_DET, imgsz=IMGSZ, half=True, device=0, rect=False, verbose=False)
    result = {
        "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
        "gpu": torch.cuda.get_device_name(0),
        "images": len(paths),
    }
    for batch in (1, 32):
        chunks = [paths[i : i + batch] for i in range(0, len(paths), batch)]
        for chunk in chunks:  # warm-up pass
            model.predict(chunk, batch=batch, **kwargs)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for chunk in chunks:
            model.predict(chunk, batch=batch, **kwargs)
        torch.cuda.synchronize()
        result[f"batch_{batch}_images_per_s"] = round(len(paths) / (time.perf_counter() - start), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
