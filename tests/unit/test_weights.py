"""Which variants `make serve` serves, and from which weights (YOLO_WEIGHTS, YOLO_WEIGHTS_DIR, YOLO_MODELS)."""

import pytest

from yolo_triton.contract import DEFAULT_VARIANTS
from yolo_triton.repository import resolve_weights


def test_default_serves_yolo11_by_name_for_ultralytics_to_download():
    assert resolve_weights({}) == {"yolov11_nano": "yolo11n.pt", "yolov11_small": "yolo11s.pt", "yolov11_medium": "yolo11m.pt"}
    assert tuple(resolve_weights({})) == DEFAULT_VARIANTS


def test_one_weights_file_serves_its_variant(tmp_path):
    pt = tmp_path / "yolo11s.pt"
    pt.write_bytes(b"x")
    assert resolve_weights({"YOLO_WEIGHTS": str(pt)}) == {"yolov11_small": str(pt)}


def test_a_custom_file_name_needs_a_variant(tmp_path):
    pt = tmp_path / "best.pt"
    pt.write_bytes(b"x")
    with pytest.raises(ValueError, match="YOLO_MODELS"):
        resolve_weights({"YOLO_WEIGHTS": str(pt)})
    assert resolve_weights({"YOLO_WEIGHTS": str(pt), "YOLO_MODELS": "yolov11_nano"}) == {"yolov11_nano": str(pt)}


def test_missing_weights_file_is_named():
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        resolve_weights({"YOLO_WEIGHTS": "/nowhere.pt"})


def test_weights_dir_serves_what_it_holds(tmp_path):
    (tmp_path / "yolo11n.pt").write_bytes(b"x")
    assert resolve_weights({"YOLO_WEIGHTS_DIR": str(tmp_path)}) == {"yolov11_nano": str(tmp_path / "yolo11n.pt")}
    with pytest.raises(FileNotFoundError, match="yolov8n.pt"):
        resolve_weights({"YOLO_WEIGHTS_DIR": str(tmp_path), "YOLO_MODELS": "yolov11_nano,yolov8_nano"})


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="yolov99"):
        resolve_weights({"YOLO_MODELS": "yolov99"})
