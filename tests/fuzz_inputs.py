"""Hostile inputs for the preprocessing, one generator for two fuzzers: the CPU tests
(tests/unit/test_fuzz_preprocessing.py, Hypothesis draws the random choices) and the GPU run
(tests/device/gpu_fuzz.py, a seeded random.Random).

Seeds: small real images of every kind the decoders meet (baseline, progressive, 4:4:4, grayscale,
CMYK and EXIF-rotated JPEG; PNG, WebP, BMP); an input is a seed mutated one to eight times (bytes
flipped anywhere or in the headers, inserted, deleted, truncated, header sizes forged), or random bytes.
"""

from __future__ import annotations

import io
import random
import struct

import cv2
import numpy as np
from PIL import Image

FORGED_SIZES = [(65535, 65535), (0, 0), (1, 65535), (60000, 60000)]
MUTATIONS = ("flip", "flip_header", "insert", "delete", "truncate", "forge_size")


def seed_images() -> dict[str, bytes]:
    """Name -> encoded bytes of a 64x48 noise image in each format."""
    pixels = np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)
    seeds = {}
    for name, ext, params in (
        ("jpeg", ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 80]),
        ("jpeg_progressive", ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        ("png", ".png", []),
        ("webp", ".webp", []),
        ("bmp", ".bmp", []),
    ):
        ok, data = cv2.imencode(ext, pixels, params)
        assert ok
        seeds[name] = data.tobytes()
    rgb = Image.fromarray(pixels[..., ::-1])
    for name, image, options in (
        ("jpeg_444", rgb, {"subsampling": 0}),
        ("jpeg_gray", Image.fromarray(pixels[..., 0]), {}),
        ("jpeg_cmyk", rgb.convert("CMYK"), {}),
        ("jpeg_exif_rotated", rgb, {"exif": _exif_rotated()}),
    ):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", **options)
        seeds[name] = buffer.getvalue()
    return seeds


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return exif.tobytes()


def mutate(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        kind = rng.choice(MUTATIONS)
        at = rng.randint(0, max(len(data) - 1, 0))
        if kind == "flip" and data:
            data[at] = rng.randint(0, 255)
        elif kind == "flip_header" and data:  # markers, sizes, tables: where parsers trust the file
            data[rng.randint(0, min(len(data), 320) - 1)] = rng.randint(0, 255)
        elif kind == "insert":
            data[at:at] = rng.randbytes(rng.randint(1, 64))
        elif kind == "delete":
            del data[at : at + rng.randint(1, 64)]
        elif kind == "truncate":
            del data[at:]
        elif kind == "forge_size" and len(data) > at + 4:  # huge or zero dimensions in a header field
            data[at : at + 4] = struct.pack(">HH", *rng.choice(FORGED_SIZES))
    return bytes(data)


def random_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(0, 4096))


def fuzz_input(rng: random.Random, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    """(kind, bytes): nine in ten a mutated seed (kind = the seed's name), else random bytes."""
    if rng.random() < 0.1:
        return "random", random_bytes(rng)
    name = rng.choice(sorted(seeds))
    return name, mutate(seeds[name], rng)
