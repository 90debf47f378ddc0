"""The client contract and the table of model variants: the one place both are defined.

Export, the model-repository generator, the Triton models, the client and the tests all read
these names, shapes and numbers from here, so none of them can drift from the others.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor as Triton sees it: dims exclude the batch dimension."""

    name: str
    data_type: str  # Triton config type, e.g. "TYPE_FP32"
    dims: tuple[int, ...]

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(_NUMPY_OF_TRITON[self.data_type])

    @property
    def datatype(self) -> str:
        """The type name of Triton's inference protocol (metadata, tritonclient)."""
        return _PROTOCOL_OF_TRITON[self.data_type]


_NUMPY_OF_TRITON = {
    "TYPE_STRING": object,
    "TYPE_UINT8": np.uint8,
    "TYPE_INT32": np.int32,
    "TYPE_FP32": np.float32,
}
_PROTOCOL_OF_TRITON = {"TYPE_STRING": "BYTES", "TYPE_UINT8": "UINT8", "TYPE_INT32": "INT32", "TYPE_FP32": "FP32"}

# --- What a client sends to and gets from every ensemble ---------------------------------------
IMAGE_INPUT = TensorSpec("image", "TYPE_STRING", (1,))  # one encoded image (JPEG, PNG, ...) per row


def detection_outputs(max_detections: int) -> tuple[TensorSpec, ...]:
    """Outputs of every ensemble and detector graph. Rows past `num_dets` are padding: boxes and
    scores 0, classes -1. Boxes are x1, y1, x2, y2 in the original image's pixels, clipped to it."""
    k = max_detections
    return (
        TensorSpec("num_dets", "TYPE_INT32", (1,)),
        TensorSpec("det_boxes", "TYPE_FP32", (k, 4)),
        TensorSpec("det_scores", "TYPE_FP32", (k,)),
        TensorSpec("det_classes", "TYPE_INT32", (k,)),
    )


# --- The hand-off from `preprocess` to a detector (inside the ensemble, not for clients) ------
# Letterboxed RGB pixels, NCHW, uint8: 4x less to move than FP32; the graph normalises.
def letterboxed_images(imgsz: int) -> TensorSpec:
    return TensorSpec("images", "TYPE_UINT8", (3, imgsz, imgsz))


# Per image: where the letterbox put it, so the graph maps boxes back to original pixels:
# (pad_x, pad_y, scale_x, scale_y, width, height); original = (letterboxed - pad) / scale.
LETTERBOX_PARAMS = TensorSpec("letterbox", "TYPE_FP32", (6,))

PREPROCESS_MODEL = "preprocess"
DETECTOR_SUFFIX = "_detector"


def is_ensemble(model: str) -> bool:
    """A model clients call: neither the shared preprocess model nor a variant's detector."""
    return model != PREPROCESS_MODEL and not model.endswith(DETECTOR_SUFFIX)
PADDING_VALUE = 114  # grey of Ultralytics' LetterBox


# --- The variant table ------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One served model: an ensemble named `name` = preprocess -> `{name}_detector`."""

    name: str
    weights: str  # Ultralytics weights file name (what Ultralytics would download)
    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]
    imgsz: int = 640
    max_detections: int = 100  # K, rows of det_boxes / det_scores / det_classes
    conf: float = 0.25
    iou: float = 0.45
    class_agnostic: bool = False
    # every (box, class) pair above conf is a candidate, as in Ultralytics' `val`; False: each box's
    # best class only, as in its `predict`
    multi_label: bool = False
    num_classes: int = 80
    nms_free: bool = False  # YOLO26's one-to-one head: top K by score above conf, no NMS

    @property
    def detector(self) -> str:
        return f"{self.name}{DETECTOR_SUFFIX}"

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return (IMAGE_INPUT,)

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return detection_outputs(self.max_detections)

    @property
    def detector_inputs(self) -> tuple[TensorSpec, ...]:
        return (letterboxed_images(self.imgsz), LETTERBOX_PARAMS)


def for_evaluation(v: Variant) -> Variant:
    """The same model with Ultralytics' `val` settings (max_det 300, conf 0.001, iou 0.7, multi-label
    NMS), for mAP."""
    return replace(v, name=f"{v.name}_eval", max_detections=300, conf=0.001, iou=0.7, multi_label=True)


_SERVING = (
    Variant("yolov11_nano", "yolo11n.pt", max_batch_size=128, preferred_batch_sizes=(8, 32, 64, 128)),
    Variant("yolov11_small", "yolo11s.pt", max_batch_size=64, preferred_batch_sizes=(8, 32, 64)),
    Variant("yolov11_medium", "yolo11m.pt", max_batch_size=32, preferred_batch_sizes=(8, 16, 32)),
    Variant("yolov8_nano", "yolov8n.pt", max_batch_size=128, preferred_batch_sizes=(8, 32, 64, 128)),
    Variant("yolov26_nano", "yolo26n.pt", max_batch_size=128, preferred_batch_sizes=(8, 32, 64, 128), nms_free=True),
)
VARIANTS: dict[str, Variant] = {v.name: v for v in (*_SERVING, *map(for_evaluation, _SERVING))}
DEFAULT_VARIANTS = ("yolov11_nano", "yolov11_small", "yolov11_medium")


def variant_for_weights(path: str) -> Optional[Variant]:
    """The (serving, not eval) variant whose weights file has this file's name (yolo11n.pt -> yolov11_nano)."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return next((v for v in VARIANTS.values() if v.weights == name), None)
