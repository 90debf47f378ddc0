"""Match our detections against Ultralytics' own: same class, IoU >= 0.9, |score difference| <= 0.02."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from yolo_triton.boxes import box_iou

MIN_IOU = 0.9
MAX_SCORE_DIFF = 0.02


@dataclass
class Detections:
    boxes: np.ndarray  # [n, 4] x1 y1 x2 y2, original pixels
    scores: np.ndarray  # [n]
    classes: np.ndarray  # [n]

    @classmethod
    def from_ultralytics(cls, result) -> Detections:
        b = result.boxes
        return cls(b.xyxy.cpu().numpy(), b.conf.cpu().numpy(), b.cls.cpu().numpy().astype(int))

    @classmethod
    def from_client(cls, detections) -> Detections:
        """From the client's Detection objects (or their to_dict() form)."""
        rows = [
            (d["box"], d["score"], d["class_id"]) if isinstance(d, dict) else (d.box, d.score, d.class_id)
            for d in detections
        ]
        boxes, scores, classes = zip(*rows) if rows else ((), (), ())
        return cls(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32), np.array(classes, int))

    @classmethod
    def from_outputs(cls, num, boxes, scores, classes) -> Detections:
        n = int(np.asarray(num).reshape(-1)[0])
        return cls(boxes[:n], scores[:n], classes[:n].astype(int))


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
        iou = (
            box_iou(ref.boxes, ours.boxes)
            if len(ref.scores) and len(ours.scores)
            else np.zeros((len(ref.scores), len(ours.scores)))
        )
        used = np.zeros(len(ours.scores), bool)
        for i in np.argsort(-ref.scores):
            ok = (
                (~used)
                & (ours.classes == ref.classes[i])
                & (iou[i] >= MIN_IOU)
                & (np.abs(ours.scores - ref.scores[i]) <= MAX_SCORE_DIFF)
            )
            if ok.any():
                used[np.flatnonzero(ok)[np.argmax(iou[i][ok])]] = True
                self.matched += 1
            else:
                self.misses.append((image, int(ref.classes[i]), float(ref.scores[i]), ref.boxes[i].round(1).tolist()))

    def __str__(self) -> str:
        return (
            f"{self.matched}/{self.reference} of Ultralytics' detections matched ({100 * self.matched_fraction:.2f}%), "
            f"{self.ours - self.matched} extra of {self.ours} ours ({100 * self.extra_fraction:.2f}%)"
        )


# What two runs of our own graphs on the same pixels guarantee each other (same_detections): the
# same set of detections, each with the same class, its score within SAME_SCORE_ATOL and every box
# coordinate within SAME_BOX_ATOL pixels. The order of equal scores is not guaranteed: neither
# EfficientNMS_TRT's documentation nor ONNX Runtime's TopK fixes it, and it changes across CPUs.
SAME_SCORE_ATOL = 1e-5
SAME_BOX_ATOL = 1e-2


def unpaired(a: Detections, b: Detections, score_atol: float = SAME_SCORE_ATOL, box_atol: float = SAME_BOX_ATOL) -> int:
    """How many detections of a and b have no twin in the other (0: the same detections): one-to-one
    pairs of the same class, scores within score_atol, every box coordinate within box_atol, in any
    order. A missing or extra detection, another class or a moved box each leave one unpaired."""
    used = np.zeros(len(b.scores), bool)
    paired = 0
    for i in np.argsort(-a.scores, kind="stable"):
        box_diff = np.abs(b.boxes - a.boxes[i]).max(axis=1)
        ok = (
            (~used)
            & (b.classes == a.classes[i])
            & (np.abs(b.scores - a.scores[i]) <= score_atol)
            & (box_diff <= box_atol)
        )
        if ok.any():
            candidates = np.flatnonzero(ok)
            used[candidates[np.argmin(box_diff[candidates])]] = True
            paired += 1
    return len(a.scores) + len(b.scores) - 2 * paired


def letterboxed_alike(paths, imgsz):
    """The images Ultralytics' val loader letterboxes exactly as its predict does: those whose long
    side is imgsz already. Others it resizes first, with ceil() sizes (and INTER_AREA to shrink),
    which moves the low-score tail of the eval variants' 300 detections."""
    from PIL import Image

    return [p for p in paths if max(Image.open(p).size) == imgsz]
