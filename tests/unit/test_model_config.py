"""Every generated config is text of Triton's ModelConfig protobuf: it parses back and round-trips."""

import json
from dataclasses import replace

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from yolo_triton.contract import CLASS_NAMES_PARAMETER, VARIANTS
from yolo_triton.model_config import detector_config, ensemble_config, preprocess_config
from yolo_triton.targets import TARGETS

SQUARE = VARIANTS["yolov8_nano"]
RECT = replace(SQUARE, name="yolov8_nano_rect", rect=True, max_batch_size=8, preferred_batch_sizes=(8,))
NAMED = replace(SQUARE, name="pets", class_names=("chat", 'say "cheese"', "back\\slash", "two\nlines", "狗"))


def configs(target: str) -> dict[str, str]:
    return {
        "preprocess": preprocess_config([SQUARE], target),
        "preprocess (rect)": preprocess_config([RECT], target),
        "detector": detector_config(SQUARE, target),
        "detector (rect)": detector_config(RECT, target),
        "ensemble": ensemble_config(SQUARE),
        "ensemble (rect)": ensemble_config(RECT),
        "ensemble (own class names)": ensemble_config(NAMED),
    }


@pytest.mark.parametrize("target", TARGETS)
def test_every_config_parses_and_round_trips(target):
    for which, text in configs(target).items():
        config = text_format.Parse(text, model_config_pb2.ModelConfig())
        assert config.name and config.max_batch_size > 0, which
        assert text_format.MessageToString(config, as_utf8=True) == text, which
        assert text_format.Parse(text_format.MessageToString(config), model_config_pb2.ModelConfig()) == config, which


def test_class_names_survive_the_text_format():
    """Quotes, backslashes, line breaks and any UTF-8 in a model's own class names."""
    config = text_format.Parse(ensemble_config(NAMED), model_config_pb2.ModelConfig())
    assert json.loads(config.parameters[CLASS_NAMES_PARAMETER].string_value) == list(NAMED.class_names)
