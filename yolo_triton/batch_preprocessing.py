"""A batch of requests' encoded rows -> per request its letterboxed images and letterbox rows, or the
ImageError naming its bad row: what the `preprocess` model does for the other targets, and the
`pytorch-gpu` detector inside its own execution.

On the GPU (nvImageCodec + CuPy, gpu_preprocessing.py) the images are a CuPy array in GPU memory;
on the CPU (OpenCV, preprocessing.py) a NumPy array. The letterbox rows are NumPy either way.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np

from yolo_triton.contract import image_error
from yolo_triton.preprocessing import CpuPreprocessor, ImageError

DEVICES = ("auto", "gpu", "cpu")


def warm_up_frame() -> bytes:
    """A 1920x1080 JPEG (quality 90, about 830 KB) with the fine texture of a camera frame: the
    warm-up's image, as large in pixels and bytes as the frames most users send."""
    height, width = 1080, 1920
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], -1).astype(np.uint8)
    frame = cv2.add(frame, np.random.default_rng(0).integers(0, 48, frame.shape, dtype=np.uint8))
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def gpu_available() -> bool:
    """CuPy and nvImageCodec importable here, and a CUDA GPU (what the GPU preprocessing needs)."""
    try:
        import cupy
        from nvidia import nvimgcodec  # noqa: F401

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


class BatchPreprocessor:
    """device: "auto" (the GPU when gpu_available()), "gpu" or "cpu"; decoders (GPU): nvImageCodec's
    backends, in order (None: gpu_preprocessing's default); rect: each request letterboxed alone to the
    smallest multiple of the stride, so its images have their own height and width; warm_up_batch
    (GPU): the largest batch the caller will pass, decoded once at the start."""

    def __init__(
        self,
        imgsz: int,
        rect: bool = False,
        device: str = "auto",
        decoders: str | None = None,
        device_id: int = 0,
        warm_up_batch: int = 1,
    ):
        if device not in DEVICES:
            raise ValueError(f"parameter device must be one of {', '.join(DEVICES)}, not {device!r}")
        self.rect = rect
        self.on_gpu = device == "gpu" or (device == "auto" and gpu_available())
        if self.on_gpu:
            import cupy

            from yolo_triton.gpu_preprocessing import GpuPreprocessor

            self.impl = GpuPreprocessor(imgsz, device_id, tuple(decoders.split(",")) if decoders else None, rect)
            with self.impl.device:
                self.stream = cupy.cuda.Stream(non_blocking=True)
            # CuPy 13 deprecates toDlpack(), the bare capsule handed over without a stream
            # synchronisation per request: no warning for it in the server's log
            warnings.filterwarnings("ignore", "This function is deprecated")
        else:
            self.impl = CpuPreprocessor(imgsz, rect)
        # warm-up: kernel compile, decoder start, first OpenCV decode and resize; on the GPU a whole
        # batch of HD frames, so that the decoders' buffers have the size of the largest batch before
        # the first request, not grown during one
        self([[warm_up_frame()] * (warm_up_batch if self.on_gpu else 1)])

    @property
    def where(self) -> str:
        return f"GPU (nvImageCodec {', '.join(self.impl.backends)} + CuPy)" if self.on_gpu else "CPU (OpenCV)"

    def __call__(self, requests_rows) -> list:
        """One decode call for all rows of all requests, one letterbox call for all (one per request
        with rect); per request either (images, letterbox rows) or the ImageError naming its bad row.
        On the GPU the work is done when this returns."""
        flat = [data for rows in requests_rows for data in rows]
        if self.on_gpu:
            with self.impl.device, self.stream:
                decoded = self.impl.decode(flat, self.stream)
                results = self._split(requests_rows, decoded, lambda good: self.impl.letterbox(good, self.stream))
                self.stream.synchronize()  # the decoded images may be freed once the kernel has read them
            return results
        return self._split(requests_rows, self.impl.decode(flat), self.impl.letterbox)

    def _split(self, requests_rows, decoded, letterbox):
        """rect: each request letterboxed alone, to its own shape; else all at once."""
        outcomes, good, start = [], [], 0
        for rows in requests_rows:
            mine = decoded[start : start + len(rows)]
            start += len(rows)
            bad = next(((i, r) for i, r in enumerate(mine) if isinstance(r, ImageError)), None)
            if bad:
                outcomes.append(ImageError(image_error(bad[0], len(rows), bad[1])))
            else:
                outcomes.append((len(good), len(good) + len(mine)))
                good.extend(mine)
        if self.rect:
            return [o if isinstance(o, ImageError) else letterbox(good[o[0] : o[1]]) for o in outcomes]
        batch, params = letterbox(good)
        return [o if isinstance(o, ImageError) else (batch[o[0] : o[1]], params[o[0] : o[1]]) for o in outcomes]
