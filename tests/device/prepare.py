"""Here (CPU): prepare build/device/ for the GPU checks on the H100 (tests/device/README.md).

    .venv/bin/python tests/device/prepare.py

writes the images, Ultralytics' own predictions on them (the reference the device compares with:
the Triton side of the device has no Ultralytics), the weights (for Ultralytics' own predict loop
there), and three GPU model repositories written by the project's own writer, target
onnxruntime-gpu: FP16 (with `<model>_bare`, the FP16 network alone, for the classical path),
FP32, and `square` beside `rect` (FP16) for benchmarks/rect.py.
"""

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # benchmarks/
sys.path.insert(0, str(ROOT / "tests"))

from conftest import COCO_IMAGES, ultralytics_assets, weights_of  # noqa: E402

from benchmarks.bench import add_bare_network  # noqa: E402
from benchmarks.rect import models_file  # noqa: E402
from yolo_triton.contract import VARIANTS  # noqa: E402
from yolo_triton.models_file import load_models_file  # noqa: E402
from yolo_triton.repository import write_repository  # noqa: E402

OUT = ROOT / "build" / "device"
MODEL = "yolov11_nano"
RECT_MAX_BATCH = 64
GPU_TARGETS = ("pytorch-gpu", "onnxruntime-gpu")  # the default of make serve on a GPU first


def main():
    from ultralytics import YOLO

    v = VARIANTS[MODEL]
    shutil.rmtree(OUT, ignore_errors=True)
    images = OUT / "images"
    images.mkdir(parents=True)
    for path in [
        *sorted(COCO_IMAGES.glob("*.jpg")),
        ultralytics_assets() / "bus.jpg",
        ultralytics_assets() / "zidane.jpg",
    ]:
        shutil.copy(path, images / path.name)
    (OUT / "weights").mkdir()
    shutil.copy(weights_of(MODEL), OUT / "weights" / v.weights)

    model = YOLO(str(weights_of(MODEL)))
    reference, rect_reference = {}, {}
    for path in sorted(images.iterdir()):
        for rect, found in ((False, reference), (True, rect_reference)):  # rect: Ultralytics' default predict
            r = model.predict(str(path), **{**v.predict_arguments, "rect": rect})[0]
            found[path.name] = {
                "boxes": r.boxes.xyxy.tolist(),
                "scores": r.boxes.conf.tolist(),
                "classes": r.boxes.cls.int().tolist(),
            }
    (OUT / "reference.json").write_text(
        json.dumps({"model": MODEL, "weights": v.weights, "detections": reference, "rect_detections": rect_reference})
    )

    for target in GPU_TARGETS:
        for precision in ("fp16", "fp32"):
            repository = write_repository(
                OUT / f"model_repository_{target}_{precision}", {MODEL: str(weights_of(MODEL))}, target, precision
            )
            for stamp in repository.rglob("*.key"):
                stamp.unlink()
            if (target, precision) == ("onnxruntime-gpu", "fp16"):
                add_bare_network(repository, v, str(weights_of(MODEL)), target, precision)
    # rect against square (benchmarks/rect.py): the same weights both ways, FP16
    source = models_file(str(weights_of(MODEL)), OUT, RECT_MAX_BATCH)
    write_repository(OUT / "model_repository_rect", load_models_file(source), GPU_TARGETS[0], "fp16", str(source))
    print(f"{OUT}: {len(reference)} images, {sum(len(d['scores']) for d in reference.values())} reference detections")


if __name__ == "__main__":
    main()
