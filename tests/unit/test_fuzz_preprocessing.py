"""Fuzzing the preprocessing entry point (what the preprocess model calls on each request's bytes:
CpuPreprocessor.decode, then letterbox) with Hypothesis: random bytes, and real JPEG/PNG/WebP/BMP
files mutated (bytes flipped, inserted, deleted, truncated, header sizes forged). Every input must
end as a correct letterboxed tensor or an ImageError naming the problem: no other exception, no
crash of the process, no allocation beyond the documented limits.

FUZZ_EXAMPLES sets the number of examples per test (default 500, CI); longer runs: README."""

import io
import os
import struct

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from yolo_triton.preprocessing import CpuPreprocessor, ImageError

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "500"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PREPROCESSOR = CpuPreprocessor(640)


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (48, 64, 3), np.uint8)
    seeds = []
    for ext, params in ((".jpg", [cv2.IMWRITE_JPEG_QUALITY, 80]), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
                        (".png", []), (".webp", []), (".bmp", [])):
        ok, data = cv2.imencode(ext, pixels, params)
        assert ok
        seeds.append(data.tobytes())
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0]).save(buffer, "JPEG")  # grayscale
    return [*seeds, buffer.getvalue()]


SEEDS = _seeds()


def preprocess_one(data: bytes) -> None:
    (decoded,) = PREPROCESSOR.decode([data])
    if isinstance(decoded, ImageError):
        assert str(decoded), "an ImageError names its problem"
        return
    assert decoded.dtype == np.uint8 and decoded.ndim == 3 and decoded.shape[2] == 3
    batch, params = PREPROCESSOR.letterbox([decoded])
    assert batch.shape == (1, 3, 640, 640) and np.isfinite(params).all()
    pad_x, pad_y, scale_x, scale_y, width, height = params[0]
    assert (width, height) == (decoded.shape[1], decoded.shape[0]) and scale_x > 0 and scale_y > 0


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "forge_size"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif kind == "truncate":
            del data[at:]
        elif kind == "forge_size" and len(data) > at + 4:  # huge or zero dimensions in a header field
            data[at:at + 4] = struct.pack(">HH", *draw(st.sampled_from([(65535, 65535), (0, 0), (1, 65535), (60000, 60000)])))
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_images(data):
    preprocess_one(data)


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data):
    preprocess_one(data)


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_seeds_themselves_decode(seed):
    (decoded,) = PREPROCESSOR.decode([SEEDS[seed]])
    assert not isinstance(decoded, ImageError), decoded
