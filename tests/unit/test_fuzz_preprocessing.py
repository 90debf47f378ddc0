"""Fuzzing the preprocessing entry point (what the preprocess model calls on each request's bytes:
CpuPreprocessor.decode, then letterbox) with Hypothesis: random bytes, and small real images mutated by
the generator the GPU fuzz uses too (tests/fuzz_inputs.py). Every input must
end as a correct letterboxed tensor or an ImageError naming the problem: no other exception, no
crash of the process, no allocation beyond the documented limits.

FUZZ_EXAMPLES sets the number of examples per test (default 500, CI); longer runs: docs/limits.md, "Fuzzing"."""

import os

import numpy as np
import pytest
from fuzz_inputs import mutate, seed_images
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolo_triton.preprocessing import CpuPreprocessor, ImageError

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "500"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PREPROCESSOR = CpuPreprocessor(640)
SEEDS = seed_images()


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


@FUZZ
@given(st.sampled_from(sorted(SEEDS)), st.randoms(use_true_random=False))
def test_mutated_images(seed, rng):
    preprocess_one(mutate(SEEDS[seed], rng))


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data):
    preprocess_one(data)


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_seeds_themselves_decode(seed):
    (decoded,) = PREPROCESSOR.decode([SEEDS[seed]])
    assert not isinstance(decoded, ImageError), decoded
