"""GPU preprocessing where a GPU is (an H100 runs the full set: tests/device/README.md):
letterbox parity with the CPU letterbox (= Ultralytics' LetterBox) within 1 level, per-image
fallback and per-image errors. Skipped, with the reason, on machines without a GPU (CI)."""

import pytest


def _gpu_reason():
    try:
        import cupy
        from nvidia import nvimgcodec  # noqa: F401

        return None if cupy.cuda.runtime.getDeviceCount() > 0 else "no CUDA GPU visible"
    except Exception as e:  # ImportError, or CUDA missing
        return f"needs a CUDA GPU with CuPy and nvImageCodec ({type(e).__name__}: {e})"


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_gpu_reason() is not None, reason=str(_gpu_reason()))]


def test_letterbox_parity_within_one_level(test_images):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "device"))
    from gpu_checks import letterbox_parity

    result = letterbox_parity(test_images)
    assert result["cases"] >= 50 and result["max_abs_diff"] <= 1, result


def test_undecodable_rows_fall_back_or_fail_alone(test_images, tmp_path):
    import cupy as cp
    import cv2

    from yolo_triton.gpu_preprocessing import GpuPreprocessor
    from yolo_triton.preprocessing import ImageError

    png = cv2.imencode(".png", cv2.imread(str(test_images[0])))[1].tobytes()  # OpenCV decodes what the GPU may not
    rows = [test_images[0].read_bytes(), b"", png, b"not an image"]
    gpu, stream = GpuPreprocessor(640), cp.cuda.Stream()
    with stream:
        images = gpu.decode(rows, stream)
    assert not isinstance(images[0], ImageError) and not isinstance(images[2], ImageError)
    assert isinstance(images[1], ImageError) and isinstance(images[3], ImageError)
