"""CPU decode + letterbox, exactly as Ultralytics' predict does it (OpenCV imdecode, LetterBox).

Used by the `preprocess` Triton model on the CPU path. The output is the detector's hand-off:
letterboxed RGB uint8 NCHW pixels plus, per image, the parameters that map boxes back.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from yolo_triton.contract import LETTERBOX_PARAMS, MAX_IMAGE_BYTES, PADDING_VALUE, STRIDE

MAX_IMAGE_PIXELS = 100_000_000  # width x height from the header; larger is refused before decoding
Image.MAX_IMAGE_PIXELS = None  # PIL only reads headers here; check() applies the lower limit above


class ImageError(ValueError):
    """An input row that is not a decodable image; the message is sent back to the client."""


@dataclass(frozen=True)
class Letterbox:
    """Where Ultralytics' LetterBox (centre, scaleup) puts an image of h x w pixels: into imgsz x
    imgsz (auto=False), or rect (auto=True) into the smallest multiple of STRIDE on each side."""

    height: int
    width: int
    new_height: int
    new_width: int
    top: int
    left: int
    out_height: int
    out_width: int

    @classmethod
    def fit(cls, height: int, width: int, imgsz: int, rect: bool = False) -> Letterbox:
        # the same arithmetic, with Python's round (half to even), as ultralytics.data.augment.LetterBox
        r = min(imgsz / height, imgsz / width)
        new_w, new_h = max(round(width * r), 1), max(round(height * r), 1)
        out_h, out_w = (new_h + (imgsz - new_h) % STRIDE, new_w + (imgsz - new_w) % STRIDE) if rect else (imgsz, imgsz)
        top = round((out_h - new_h) / 2 - 0.1)
        left = round((out_w - new_w) / 2 - 0.1)
        return cls(height, width, new_h, new_w, top, left, out_h, out_w)

    def params(self) -> np.ndarray:
        """The LETTERBOX_PARAMS row: pad_x, pad_y, scale_x, scale_y, width, height."""
        row = (self.left, self.top, self.new_width / self.width, self.new_height / self.height, self.width, self.height)
        return np.array(row, dtype=LETTERBOX_PARAMS.numpy_dtype)


def letterbox_boxes(shapes: list[tuple[int, int]], imgsz: int, rect: bool = False) -> list[Letterbox]:
    """The letterbox of each image of one batch, (height, width) each. rect applies when they all
    have one shape, as in Ultralytics' predict (LetterBox auto only for `same_shapes`); a batch of
    mixed shapes is letterboxed to imgsz x imgsz."""
    rect = rect and len(set(shapes)) == 1
    return [Letterbox.fit(h, w, imgsz, rect) for h, w in shapes]


def check(data: bytes) -> str | None:
    """Refuse, before any decoding, what must not be decoded: no bytes, too many bytes, a JPEG cut
    short, or a header claiming more than MAX_IMAGE_PIXELS (a decompression bomb). Returns the
    format the header names (PIL reads headers only here), None if unknown."""
    if len(data) == 0:
        raise ImageError("empty input: no image bytes")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"image is {len(data)} bytes, over the limit of {MAX_IMAGE_BYTES}")
    # OpenCV refuses most truncated JPEGs, nvImageCodec decodes what is there: refuse them alike.
    # FF D9 cannot occur inside entropy-coded data (FF is stuffed there), only as a marker.
    if data.startswith(b"\xff\xd8\xff") and data.rfind(b"\xff\xd9") < 0:
        raise ImageError(f"truncated JPEG ({len(data)} bytes): no end-of-image marker")
    try:
        with Image.open(io.BytesIO(data)) as header:
            (width, height), kind = header.size, header.format
    except Exception:  # not a header PIL knows: the decoder decides
        return None
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(f"image header claims {width}x{height} pixels, over the limit of {MAX_IMAGE_PIXELS}: refused")
    return kind


def decode(data: bytes) -> np.ndarray:
    """Encoded image -> BGR uint8 HxWx3, as Ultralytics' imread (cv2.IMREAD_COLOR applies EXIF
    orientation, drops alpha, expands grayscale)."""
    kind = check(data)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        what = f"{kind} image" if kind else "image"
        raise ImageError(f"cannot decode {what} ({len(data)} bytes): not a supported image format, or corrupt")
    return image


def letterbox_into(out: np.ndarray, image: np.ndarray, box: Letterbox | None = None) -> np.ndarray:
    """Letterbox a BGR image into `out` (3 x H x W uint8, RGB) where `box` says (default: into the
    out x out square); return its LETTERBOX_PARAMS row."""
    box = box or Letterbox.fit(image.shape[0], image.shape[1], out.shape[-1])
    if (box.new_height, box.new_width) != image.shape[:2]:
        image = cv2.resize(image, (box.new_width, box.new_height), interpolation=cv2.INTER_LINEAR)
    out[...] = PADDING_VALUE
    out[:, box.top : box.top + box.new_height, box.left : box.left + box.new_width] = image[..., ::-1].transpose(
        2, 0, 1
    )
    return box.params()


class CpuPreprocessor:
    """The CPU implementation of the preprocess model's two steps (GpuPreprocessor's twin)."""

    def __init__(self, imgsz: int, rect: bool = False):
        self.imgsz, self.rect = imgsz, rect

    def decode(self, rows: list[bytes]) -> list:
        """Every row decoded (BGR), or the ImageError of that row."""
        images = []
        for data in rows:
            try:
                images.append(decode(data))
            except ImageError as e:
                images.append(e.with_traceback(None))  # its traceback would hold this list (a cycle)
        return images

    def letterbox(self, images: list) -> tuple[np.ndarray, np.ndarray]:
        """One batch: (N, 3, H, W) uint8 RGB and the LETTERBOX_PARAMS rows (letterbox_boxes)."""
        boxes = letterbox_boxes([im.shape[:2] for im in images], self.imgsz, self.rect)
        height, width = (boxes[0].out_height, boxes[0].out_width) if boxes else (self.imgsz, self.imgsz)
        batch = np.empty((len(images), 3, height, width), np.uint8)
        params = np.empty((len(images), *LETTERBOX_PARAMS.dims), LETTERBOX_PARAMS.numpy_dtype)
        for i, (image, box) in enumerate(zip(images, boxes)):
            params[i] = letterbox_into(batch[i], image, box)
        return batch, params
