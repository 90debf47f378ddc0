"""Which variants `make serve` serves, and from which weights (YOLO_WEIGHTS, YOLO_WEIGHTS_DIR,
YOLO_MODELS; with nothing named: Ultralytics' download, else the test weights, else a clear exit).
No test here touches the network: whether it is there is passed in."""

import os
import subprocess
import sys

import pytest

from yolo_triton.contract import DEFAULT_VARIANTS
from yolo_triton.weights import ROOT, NoWeights, resolve_weights

ONLINE, OFFLINE = (lambda: True), (lambda: False)


def test_default_serves_yolo11_by_name_for_ultralytics_to_download():
    assert resolve_weights({}, ONLINE) == {
        "yolov11_nano": "yolo11n.pt",
        "yolov11_small": "yolo11s.pt",
        "yolov11_medium": "yolo11m.pt",
    }
    assert tuple(resolve_weights({}, ONLINE)) == DEFAULT_VARIANTS


def test_offline_default_serves_the_test_weights_and_says_so(tmp_path, capsys):
    (tmp_path / "weights").mkdir()
    for name in ("yolo11n.pt", "yolo11s.pt", "yolo11m.pt"):
        (tmp_path / "weights" / name).write_bytes(b"x")
    weights = resolve_weights({"YOLO_TEST_DATA": str(tmp_path)}, OFFLINE)
    assert weights == {
        v: str(tmp_path / "weights" / f)
        for v, f in (("yolov11_nano", "yolo11n.pt"), ("yolov11_small", "yolo11s.pt"), ("yolov11_medium", "yolo11m.pt"))
    }
    (line,) = capsys.readouterr().out.splitlines()
    assert "test weights" in line and str(tmp_path / "weights") in line and "YOLO_WEIGHTS" in line
    assert resolve_weights({"YOLO_TEST_DATA": str(tmp_path), "YOLO_MODELS": "yolov11_nano"}, OFFLINE) == {
        "yolov11_nano": weights["yolov11_nano"]
    }


def test_offline_without_test_weights_names_what_to_set(tmp_path):
    with pytest.raises(NoWeights, match="YOLO_WEIGHTS=.*YOLO_WEIGHTS_DIR="):
        resolve_weights({"YOLO_TEST_DATA": str(tmp_path)}, OFFLINE)
    named = tmp_path / "yolo11n.pt"
    named.write_bytes(b"x")  # named weights never ask for the network
    assert resolve_weights({"YOLO_WEIGHTS": str(named)}, lambda: pytest.fail("asked for the network")) == {
        "yolov11_nano": str(named)
    }


def test_nothing_to_serve_exits_2_with_one_message(tmp_path):
    """The command `make serve` runs, with no network and no test weights: status 2, no traceback."""
    offline = (
        "import sys; from yolo_triton import serve, weights; "
        "weights.network_available = lambda timeout=2.0: False; "
        "sys.argv = ['serve', '--repository', sys.argv[1]]; serve.main()"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")} | {"YOLO_TEST_DATA": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-c", offline, str(tmp_path / "repo")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and "YOLO_WEIGHTS" in run.stderr and len(run.stderr.strip().splitlines()) == 1


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
