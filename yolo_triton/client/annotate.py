"""Draw detections onto the image they came from, for a person to look at (`yolo-triton detect --save`)."""

from __future__ import annotations

import colorsys
from pathlib import Path

import cv2
import numpy as np

from yolo_triton.client.async_detector import Detection
from yolo_triton.preprocessing import decode


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per class (golden-ratio hues)."""
    r, g, b = colorsys.hsv_to_rgb((class_id * 0.618034) % 1.0, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def annotate(encoded: bytes, detections: tuple[Detection, ...]) -> np.ndarray:
    """The image decoded as the server decodes it (EXIF orientation applied, so boxes line up),
    with one box and a "class score" label per detection; BGR uint8."""
    image = decode(encoded)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    scale = thickness / 3
    for d in detections:
        colour = class_colour(d.class_id)
        x1, y1, x2, y2 = (int(round(v)) for v in d.box)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
        label = f"{d.class_name} {d.score:.2f}"
        (w, h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = y1 - h - base if y1 - h - base >= 0 else y1  # above the box, or inside it at the top edge
        cv2.rectangle(image, (x1, top), (x1 + w, top + h + base), colour, cv2.FILLED)
        cv2.putText(
            image, label, (x1, top + h), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA
        )
    return image


def save_annotated(encoded: bytes, detections: tuple[Detection, ...], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), annotate(encoded, detections)):
        raise OSError(f"cannot write {path}")
    return path
