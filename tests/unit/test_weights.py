"""Which variants `make serve` serves, and from which weights (YOLO_WEIGHTS, YOLO_WEIGHTS_DIR,
YOLO_MODELS; with nothing named: Ultralytics' download, else the test weights, else a clear exit);
every mistake in them one line and exit status 2. No test here touches the network: whether it is
there is passed in."""

import os
import subprocess
import sys

import pytest

from yolo_triton.contract import DEFAULT_VARIANTS
from yolo_triton.weights import ROOT, WeightsError, resolve_weights

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
    with pytest.raises(WeightsError, match="YOLO_WEIGHTS=.*YOLO_WEIGHTS_DIR="):
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
    with pytest.raises(WeightsError, match="YOLO_MODELS"):
        resolve_weights({"YOLO_WEIGHTS": str(pt)})
    assert resolve_weights({"YOLO_WEIGHTS": str(pt), "YOLO_MODELS": "yolov11_nano"}) == {"yolov11_nano": str(pt)}


def test_missing_weights_file_is_named():
    with pytest.raises(WeightsError, match="nowhere.pt"):
        resolve_weights({"YOLO_WEIGHTS": "/nowhere.pt"})


def test_weights_dir_serves_every_variant_whose_file_it_holds_and_says_which(tmp_path, capsys):
    for name in ("yolov8n.pt", "yolo26n.pt", "best.pt"):
        (tmp_path / name).write_bytes(b"x")
    assert resolve_weights({"YOLO_WEIGHTS_DIR": str(tmp_path)}) == {
        "yolov8_nano": str(tmp_path / "yolov8n.pt"),
        "yolov26_nano": str(tmp_path / "yolo26n.pt"),
    }
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"YOLO_WEIGHTS_DIR={tmp_path}: serving yolov8_nano, yolov26_nano")
    named = {"YOLO_WEIGHTS_DIR": str(tmp_path), "YOLO_MODELS": "yolov8_nano_eval"}  # any variant, when named
    assert resolve_weights(named) == {"yolov8_nano_eval": str(tmp_path / "yolov8n.pt")}
    with pytest.raises(WeightsError, match=r"has no yolo11n.pt \(yolov11_nano\)"):
        resolve_weights({"YOLO_WEIGHTS_DIR": str(tmp_path), "YOLO_MODELS": "yolov11_nano,yolov8_nano"})


# Each mistake in the variables, and the start of the one line that says it
MISTAKES = {
    "unknown variant": ({"YOLO_MODELS": "yolov99"}, "YOLO_MODELS: unknown variant(s) yolov99;"),
    "no such file": ({"YOLO_WEIGHTS": "/nowhere.pt"}, "YOLO_WEIGHTS=/nowhere.pt is not a file"),
    "a file of no variant": ({"YOLO_WEIGHTS": "{folder}/best.pt"}, "YOLO_WEIGHTS={folder}/best.pt: no built-in"),
    "one file, two variants": (
        {"YOLO_WEIGHTS": "{folder}/best.pt", "YOLO_MODELS": "yolov11_nano,yolov8_nano"},
        "YOLO_WEIGHTS gives one file",
    ),
    "no such folder": ({"YOLO_WEIGHTS_DIR": "/nowhere"}, "YOLO_WEIGHTS_DIR=/nowhere is not a folder"),
    "no weights in the folder": ({"YOLO_WEIGHTS_DIR": "{folder}"}, "YOLO_WEIGHTS_DIR={folder} holds none"),
    "a named file missing": (
        {"YOLO_WEIGHTS_DIR": "{folder}", "YOLO_MODELS": "yolov11_nano"},
        "YOLO_WEIGHTS_DIR={folder} has no yolo11n.pt",
    ),
    "models file beside them": (
        {"YOLO_MODELS_FILE": "{folder}/models.yaml", "YOLO_WEIGHTS_DIR": "{folder}"},
        "YOLO_MODELS_FILE names the models and their weights: unset YOLO_WEIGHTS_DIR",
    ),
    "unknown device": ({"YOLO_DEVICE": "tpu"}, "YOLO_DEVICE must be one of auto, gpu, cpu, not 'tpu'"),
    "unknown precision": ({"YOLO_PRECISION": "fp8"}, "YOLO_PRECISION must be one of fp32, fp16, not 'fp8'"),
}


@pytest.mark.parametrize("command", ["serve", "repository"])
@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_mistake_is_one_line_and_exit_status_2(mistake, command, tmp_path, monkeypatch, capsys):
    """What `make serve` (and `make repository`) run, in this process: no traceback, status 2."""
    import importlib

    (tmp_path / "best.pt").write_bytes(b"x")
    settings, message = MISTAKES[mistake]
    for key in [k for k in os.environ if k.startswith("YOLO_")]:
        monkeypatch.delenv(key)
    for key, value in settings.items():
        monkeypatch.setenv(key, value.format(folder=tmp_path))
    monkeypatch.setattr(sys, "argv", [command, "--out" if command == "repository" else "--repository", str(tmp_path)])
    with pytest.raises(SystemExit) as exited:
        importlib.import_module(f"yolo_triton.{command}").main()
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(message.format(folder=tmp_path)), line
