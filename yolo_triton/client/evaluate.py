"""COCO-style evaluation of a served ensemble, next to `ultralytics val` on the same images and weights.

    yolo-triton eval ../shared/data/coco128/images/train2017 --model yolov11_nano_eval \
        --weights ../shared/data/weights/yolo11n.pt

The images are sent to the server as they are (JPEG bytes); labels are Ultralytics' YOLO text
files found the Ultralytics way (`.../images/x.jpg` -> `.../labels/x.txt`). mAP50-95 and mAP50 are
computed by Ultralytics' own metric code (DetectionValidator's matching, DetMetrics' AP), the same
code `ultralytics val` runs, so the two numbers differ only by the detections. Use an `*_eval`
variant: it carries val's settings (conf 0.001, iou 0.7, 300 detections).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yolo_triton.client.async_detector import IMAGE_SUFFIXES, Detection, ImageResult
from yolo_triton.contract import VARIANTS, Variant


@dataclass(frozen=True)
class Scores:
    map50_95: float
    map50: float
    images: int
    instances: int

    def __str__(self) -> str:
        return (
            f"mAP50-95 {100 * self.map50_95:.2f}  mAP50 {100 * self.map50:.2f}  "
            f"({self.images} images, {self.instances} instances)"
        )


def labelled_images(images_dir: Path) -> list[Path]:
    """The images of a folder; each one's label file may be missing (an image without objects)."""
    found = sorted(p for p in Path(images_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise FileNotFoundError(f"no images in {images_dir}")
    return found


def served_detections(results: list[ImageResult]) -> list[tuple[Detection, ...]]:
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} images were refused, e.g. {failed[0].source}: {failed[0].error}")
    return [r.detections for r in results]


def label_path(image: Path) -> Path:
    from ultralytics.data.utils import img2label_paths

    return Path(img2label_paths([str(image)])[0])


def _label_rows(image: Path) -> np.ndarray:
    labels = label_path(image)
    return np.loadtxt(labels, ndmin=2, dtype=np.float32) if labels.exists() else np.zeros((0, 5), np.float32)


def ground_truth_classes(image: Path) -> np.ndarray:
    return _label_rows(image)[:, 0].astype(np.int64)


def ground_truth(image: Path) -> tuple[np.ndarray, np.ndarray]:
    """Classes [M] and x1,y1,x2,y2 boxes [M,4] in the image's pixels (as displayed, EXIF applied)."""
    from PIL import Image
    from ultralytics.data.utils import exif_size

    rows = _label_rows(image)
    with Image.open(image) as im:
        width, height = exif_size(im)
    cx, cy, w, h = (rows[:, i] for i in range(1, 5))
    boxes = np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1)
    return rows[:, 0].astype(np.int64), boxes.reshape(-1, 4)


def score(detections: list[Sequence[Detection]], images: list[Path], names: Sequence[str]) -> Scores:
    """mAP of each image's detections (sorted by score) against its labels, by Ultralytics' metric
    code; `names`: the model's class names."""
    import torch
    from ultralytics.models.yolo.detect import DetectionValidator
    from ultralytics.utils.metrics import DetMetrics, box_iou

    metrics = DetMetrics(names=dict(enumerate(names)))
    with tempfile.TemporaryDirectory() as scratch:
        validator = DetectionValidator(save_dir=Path(scratch), args={"plots": False})
    instances = 0
    for image, found in zip(images, detections, strict=True):
        true_cls, true_boxes = ground_truth(image)
        instances += len(true_cls)
        pred_cls = np.array([d.class_id for d in found], np.int64)
        conf = np.array([d.score for d in found], np.float32)
        boxes = torch.tensor([d.box for d in found], dtype=torch.float32).reshape(-1, 4)
        if len(true_cls) and len(pred_cls):
            iou = box_iou(torch.from_numpy(true_boxes), boxes)
            tp = validator.match_predictions(torch.from_numpy(pred_cls), torch.from_numpy(true_cls), iou).numpy()
        else:
            tp = np.zeros((len(pred_cls), validator.niou), bool)
        metrics.update_stats(
            {
                "tp": tp,
                "conf": conf,
                "pred_cls": pred_cls,
                "target_cls": true_cls,
                "target_img": np.unique(true_cls),
                "im_name": image.name,
            }
        )
    metrics.process()
    return Scores(float(metrics.box.map), float(metrics.box.map50), len(images), instances)


@dataclass(frozen=True)
class ValResult:
    scores: Scores
    predictions: dict[str, tuple[Detection, ...]]  # image file name -> val's detections, in its pixels


def ultralytics_val(weights: Path, images: list[Path], model: str | Variant, rect: bool = False) -> ValResult:
    """`ultralytics val` of the weights on the same images with the settings of the variant (or the
    built-in variant of that name), in a scratch copy of the dataset (val writes a label cache
    beside the labels); the classes are named as in the weights.

    rect=False feeds val the served geometry, every image letterboxed into imgsz x imgsz; it is what
    val does itself for Ultralytics' fixed-shape exports (ONNX, TensorRT). rect=True is its
    default for .pt weights: batches padded only to a multiple of the stride."""
    import json

    from ultralytics import YOLO

    variant = model if isinstance(model, Variant) else VARIANTS[model]
    yolo = YOLO(str(weights))
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for folder in "images", "labels":
            (root / folder / "val").mkdir(parents=True)
        for image in images:
            shutil.copy2(image, root / "images" / "val")
            if label_path(image).exists():
                shutil.copy2(label_path(image), root / "labels" / "val")
        data = root / "data.yaml"
        names = "\n".join(f"  {i}: {json.dumps(name)}" for i, name in yolo.names.items())
        data.write_text(f"path: {root}\ntrain: images/val\nval: images/val\nnames:\n{names}\n")
        metrics = yolo.val(
            data=str(data),
            imgsz=variant.imgsz,
            conf=variant.conf,
            iou=variant.iou,
            max_det=variant.max_detections,
            rect=rect,
            batch=16,
            save_json=True,
            plots=False,
            verbose=False,
            project=str(root / "runs"),
        )
        found = json.loads((Path(metrics.save_dir) / "predictions.json").read_text())
    # val's image_id: the file stem, as a number where it is one (COCO's 000000000196 -> 196)
    stems = {str(int(i.stem)) if i.stem.isnumeric() else i.stem: i.name for i in images}
    predictions = {image.name: [] for image in images}
    for p in sorted(found, key=lambda p: -p["score"]):  # COCO json: x, y, w, h; category_id = class + 1
        x, y, w, h = p["bbox"]
        c = p["category_id"] - 1
        predictions[stems[str(p["image_id"])]].append(Detection(c, yolo.names[c], p["score"], (x, y, x + w, y + h)))
    instances = sum(len(ground_truth_classes(image)) for image in images)
    scores = Scores(float(metrics.box.map), float(metrics.box.map50), len(images), instances)
    return ValResult(scores, {name: tuple(found) for name, found in predictions.items()})
