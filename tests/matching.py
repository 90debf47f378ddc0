"""Match our detections against Ultralytics' own: same class, IoU >= 0.9, |score difference| <= 0.02."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_IOU = 0.9
MAX_SCORE_DIFF = 0.02


@dataclass
class Detections:
    boxes: np.ndarray  # [n, 4] x1 y1 x2 y2, original pixels
    scores: np.ndarray  # [n]
    classes: np.ndarray  # [n]

    @classmethod
    def from_ultralytics(cls, result) -> "Detections":
        b = result.boxes
        return cls(b.xyxy.cpu().numpy(), b.conf.cpu().numpy(), b.cls.cpu().numpy().astype(int))

    @classmethod
    def from_outputs(cls, num, boxes, scores, classes) -> "Detections":
        n = int(np.asarray(num).reshape(-1)[0])
        return cls(boxes[:n], scores[:n], classes[:n].astype(int))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).clip(0).prod(-1)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class MatchCounts:
    reference: int = 0  # Ultralytics' detections
    ours: int = 0
    matched: int = 0
    misses: list = field(default_factory=list)  # (image, reference detection) not matched

    @property
    def matched_fraction(self) -> float:
        return self.matched / self.reference if self.reference else 1.0

    @property
    def extra_fraction(self) -> float:
        """Our detections that match none of Ultralytics', relative to Ultralytics' count."""
        return (self.ours - self.matched) / max(self.reference, 1)

    def add(self, image: str, ref: Detections, ours: Detections) -> None:
        """Greedy one-to-one matching, Ultralytics' detections in score order."""
        self.reference += len(ref.scores)
        self.ours += len(ours.scores)
        iou = iou_matrix(ref.boxes, ours.boxes) if len(ref.scores) and len(ours.scores) else np.zeros((len(ref.scores), len(ours.scores)))
        used = np.zeros(len(ours.scores), bool)
        for i in np.argsort(-ref.scores):
            ok = (~used) & (ours.classes == ref.classes[i]) & (iou[i] >= MIN_IOU) & (np.abs(ours.scores - ref.scores[i]) <= MAX_SCORE_DIFF)
            if ok.any():
                used[np.flatnonzero(ok)[np.argmax(iou[i][ok])]] = True
                self.matched += 1
            else:
                self.misses.append((image, int(ref.classes[i]), float(ref.scores[i]), ref.boxes[i].round(1).tolist()))

    def __str__(self) -> str:
        return (f"{self.matched}/{self.reference} of Ultralytics' detections matched ({100 * self.matched_fraction:.2f}%), "
                f"{self.ours - self.matched} extra of {self.ours} ours ({100 * self.extra_fraction:.2f}%)")


def letterboxed_alike(paths, imgsz):
    """The images Ultralytics' val loader letterboxes exactly as its predict does: those whose long
    side is imgsz already. Others it resizes first, with ceil() sizes (and INTER_AREA to shrink),
    which moves the low-score tail of the eval variants' 300 detections."""
    from PIL import Image

    return [p for p in paths if max(Image.open(p).size) == imgsz]
