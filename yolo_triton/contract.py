"""The client contract and the table of model variants: the one place both are defined.

Export, the model-repository generator, the Triton models, the client and the tests all read
these names, shapes and numbers from here, so none of them can drift from the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor as Triton sees it: dims exclude the batch dimension."""

    name: str
    data_type: str  # Triton config type, e.g. "TYPE_FP32"
    dims: tuple[int, ...]

    @property
    def numpy_dtype(self) -> np.dtype:
        return numpy_dtype(self.data_type)

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


def numpy_dtype(data_type: str) -> np.dtype:
    """The NumPy type of a Triton config type ("TYPE_FP32" -> float32)."""
    return np.dtype(_NUMPY_OF_TRITON[data_type])


_PROTOCOL_OF_TRITON = {"TYPE_STRING": "BYTES", "TYPE_UINT8": "UINT8", "TYPE_INT32": "INT32", "TYPE_FP32": "FP32"}

# --- What a client sends to and gets from every ensemble ---------------------------------------
IMAGE_INPUT = TensorSpec("image", "TYPE_STRING", (1,))  # one encoded image (JPEG, PNG, ...) per row
MAX_IMAGE_BYTES = 64 * 1024 * 1024  # one encoded image; a larger payload is refused before decoding
# A request with an image that cannot be served fails alone, with this message (HTTP 400 /
# INVALID_ARGUMENT); the client reads the reason back out of it.
_IMAGE_ERROR = "image {index} of {count} in the request: {reason}"
_IMAGE_ERROR_PATTERN = re.compile(r"image \d+ of \d+ in the request: (.*)", re.S)


def image_error(index: int, count: int, reason: object) -> str:
    return _IMAGE_ERROR.format(index=index, count=count, reason=reason)


def image_error_reason(message: str) -> str | None:
    """The reason of an image_error() message (Triton may wrap it in text of its own), else None."""
    found = _IMAGE_ERROR_PATTERN.search(message)
    return found.group(1).strip() if found else None


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
def letterboxed_images(imgsz: int, rect: bool = False) -> TensorSpec:
    """imgsz x imgsz; rect: each side padded only to a multiple of STRIDE (at most imgsz), so the
    height and width vary with the image's aspect ratio."""
    return TensorSpec("images", "TYPE_UINT8", (3, -1, -1) if rect else (3, imgsz, imgsz))


STRIDE = 32  # the largest stride of a YOLO detection head: input sides are multiples of it


# Per image: where the letterbox put it, so the graph maps boxes back to original pixels:
# (pad_x, pad_y, scale_x, scale_y, width, height); original = (letterboxed - pad) / scale.
LETTERBOX_PARAMS = TensorSpec("letterbox", "TYPE_FP32", (6,))

PREPROCESS_MODEL = "preprocess"  # of the 640 x 640 variants; other sizes: preprocess_<imgsz>
DETECTOR_SUFFIX = "_detector"
DEFAULT_IMGSZ = 640
CLASS_NAMES_PARAMETER = "class_names"  # ensemble config parameter: the model's class names, a JSON list


def preprocess_model(imgsz: int, rect: bool = False) -> str:
    """The preprocess model shared by every variant of this input size and letterbox."""
    return PREPROCESS_MODEL + (f"_{imgsz}" if imgsz != DEFAULT_IMGSZ else "") + ("_rect" if rect else "")


def is_ensemble(model: str) -> bool:
    """A model clients call: neither a preprocess model nor a variant's detector."""
    return (
        model != PREPROCESS_MODEL
        and not model.startswith(f"{PREPROCESS_MODEL}_")
        and not model.endswith(DETECTOR_SUFFIX)
    )


PADDING_VALUE = 114  # grey of Ultralytics' LetterBox

# Boxes of class c are moved by c x CLASS_OFFSET before a one-group NMS, so boxes of different
# classes never overlap: per-class NMS in one group (Ultralytics' NMS does the same, with 7680).
CLASS_OFFSET = 7680.0


# --- The variant table ------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One served model: an ensemble named `name` = preprocess -> `{name}_detector`. The fields a
    models file may set (yolo_triton/models_file.py) are the ones with defaults."""

    name: str
    weights: str  # a .pt path, or a name Ultralytics downloads (yolo11n.pt)
    max_batch_size: int = 64
    preferred_batch_sizes: tuple[int, ...] = (8, 32, 64)
    imgsz: int = DEFAULT_IMGSZ
    max_detections: int = 100  # K, rows of det_boxes / det_scores / det_classes
    conf: float = 0.25
    iou: float = 0.45
    class_agnostic: bool = False
    # every (box, class) pair above conf is a candidate, as in Ultralytics' `val`; False: each box's
    # best class only, as in its `predict`
    multi_label: bool = False
    nms_free: bool = False  # an end-to-end head (YOLO26, YOLOv10): top K by score above conf, no NMS
    # the letterbox pads to the smallest multiple of STRIDE, as Ultralytics' LetterBox(auto=True) in
    # its default predict, instead of to imgsz x imgsz; the detector takes any height and width
    rect: bool = False
    # from the weights (models_file.inspect_weights): the head's classes and their names
    num_classes: int = 80
    class_names: tuple[str, ...] = ()

    @property
    def detector(self) -> str:
        return f"{self.name}{DETECTOR_SUFFIX}"

    @property
    def preprocess(self) -> str:
        return preprocess_model(self.imgsz, self.rect)

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return (IMAGE_INPUT,)

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return detection_outputs(self.max_detections)

    @property
    def detector_inputs(self) -> tuple[TensorSpec, ...]:
        return (letterboxed_images(self.imgsz, self.rect), LETTERBOX_PARAMS)

    @property
    def predict_arguments(self) -> dict:
        """The Ultralytics call whose detections this model serves: YOLO(weights).predict(image, **these)."""
        return {
            "conf": self.conf,
            "iou": self.iou,
            "imgsz": self.imgsz,
            "max_det": self.max_detections,
            "agnostic_nms": self.class_agnostic,
            "rect": self.rect,
            "nms": False if self.nms_free else None,
            "verbose": False,
        }


# Ultralytics' `val` settings (max_det 300, conf 0.001, iou 0.7, multi-label NMS), for mAP: what
# `eval: true` sets in a models file
EVALUATION_SETTINGS = {"max_detections": 300, "conf": 0.001, "iou": 0.7, "multi_label": True}

# The built-in models, written as a models file is (models_file.py reads both the same way);
# each also has an `<name>_eval` twin with the evaluation settings.
_SERVING = {
    "yolov11_nano": {"weights": "yolo11n.pt", "max_batch_size": 128, "preferred_batch_sizes": [8, 32, 64, 128]},
    "yolov11_small": {"weights": "yolo11s.pt", "max_batch_size": 64, "preferred_batch_sizes": [8, 32, 64]},
    "yolov11_medium": {"weights": "yolo11m.pt", "max_batch_size": 32, "preferred_batch_sizes": [8, 16, 32]},
    "yolov8_nano": {"weights": "yolov8n.pt", "max_batch_size": 128, "preferred_batch_sizes": [8, 32, 64, 128]},
    "yolov26_nano": {
        "weights": "yolo26n.pt",
        "max_batch_size": 128,
        "preferred_batch_sizes": [8, 32, 64, 128],
        "nms_free": True,
    },
}
BUILTIN_SOURCE = "the built-in model table"  # what errors about it name
BUILTIN_MODELS: dict[str, dict] = {
    **_SERVING,
    **{f"{name}_eval": {**entry, "eval": True} for name, entry in _SERVING.items()},
}
DEFAULT_VARIANTS = ("yolov11_nano", "yolov11_small", "yolov11_medium")


def __getattr__(name: str):
    """VARIANTS, the built-in table as Variants, made on first use: models_file.py, which reads it,
    imports this module."""
    if name == "VARIANTS":
        from yolo_triton.models_file import parse_models

        globals()["VARIANTS"] = parse_models(BUILTIN_MODELS, BUILTIN_SOURCE)
        return globals()["VARIANTS"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def variant_for_weights(path: str) -> Variant | None:
    """The (serving, not eval) variant whose weights file has this file's name (yolo11n.pt -> yolov11_nano)."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return next((v for v in __getattr__("VARIANTS").values() if v.weights == name and not v.multi_label), None)
