"""Shared fixtures: test data from YOLO_TEST_DATA (default ../shared/data; nothing is downloaded
here, `make test-data` fetches it), and one real Triton server for the whole session, started on
free ports on the CPU path."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from yolo_triton.contract import BUILTIN_MODELS, VARIANTS, Variant
from yolo_triton.models_file import load_models_file
from yolo_triton.tritonserver import TritonServer, free_ports

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
from fetch_test_data import coco128_images, missing, test_data_folder  # noqa: E402

os.environ.setdefault("YOLO_OFFLINE", "1")  # Ultralytics: no update or hub checks

TEST_DATA = test_data_folder()
WEIGHTS_DIR = TEST_DATA / "weights"
COCO_IMAGES = coco128_images(TEST_DATA)
YOLO_TRITON = Path(sys.executable).parent / "yolo-triton"  # the entry point `make install` puts in the venv
SERVED = ("yolov11_nano", "yolov11_small", "yolov11_medium", "yolov8_nano", "yolov26_nano", "yolov11_nano_eval")
# Served beside them from the same models file: a model of one's own (3 classes with their own
# names, tests/fixtures/custom_weights.py) and the official YOLOv8n at two other input sizes.
CUSTOM_MODEL = "pets"
OTHER_SIZES = {"yolov8_nano_320": 320, "yolov8_nano_1280": 1280}
RECT_MODEL = "yolov8_nano_rect"  # rectangular inference: Ultralytics' default predict
ALL_SERVED = (*SERVED, CUSTOM_MODEL, *OTHER_SIZES, RECT_MODEL)


def pyproject() -> dict:
    """pyproject.toml's [project] table."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        from pip._vendor import tomli as tomllib

    return tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]


def release_settings() -> dict[str, str]:
    """.env's settings (the release train docker compose reads), name -> value."""
    lines = (Path(__file__).parents[1] / ".env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def ultralytics_assets() -> Path:
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets"


@pytest.fixture(scope="session")
def test_images() -> list[Path]:
    """The 128 coco128 photos plus the wheel's bus.jpg and zidane.jpg."""
    images = sorted(COCO_IMAGES.glob("*.jpg")) + [ultralytics_assets() / "bus.jpg", ultralytics_assets() / "zidane.jpg"]
    assert len(images) == 130, f"expected the 128 coco128 photos under {COCO_IMAGES}"
    return images


def weights_of(name: str) -> Path:
    path = WEIGHTS_DIR / VARIANTS[name].weights
    assert path.is_file(), f"missing test weights {path}"
    return path


@pytest.fixture(scope="session")
def models_file(tmp_path_factory) -> Path:
    """The session's models file: the built-in entries of SERVED with the shared weights, the
    custom model (weights beside the file, named by a relative path) and OTHER_SIZES."""
    import yaml
    from custom_weights import make_custom_weights

    folder = tmp_path_factory.mktemp("models")
    make_custom_weights(weights_of("yolov8_nano"), folder / "pets.pt")
    entries = {n: {**BUILTIN_MODELS[n], "weights": str(weights_of(n))} for n in SERVED}
    entries[CUSTOM_MODEL] = {"weights": "pets.pt", "max_batch_size": 8}
    for name, imgsz in OTHER_SIZES.items():
        entries[name] = {"weights": str(weights_of("yolov8_nano")), "imgsz": imgsz, "max_batch_size": 8}
    entries[RECT_MODEL] = {"weights": str(weights_of("yolov8_nano")), "rect": True, "max_batch_size": 8}
    (folder / "models.yaml").write_text(yaml.safe_dump(entries, sort_keys=False))
    return folder / "models.yaml"


@pytest.fixture(scope="session")
def served_models(models_file) -> dict[str, Variant]:
    return load_models_file(models_file)


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory, models_file) -> Path:
    """A repository freshly exported from the models file by `python -m yolo_triton.repository`
    (the export is part of what is tested; in its own process, whose memory goes when it ends)."""
    out = tmp_path_factory.mktemp("model_repository")
    run = subprocess.run(
        [sys.executable, "-m", "yolo_triton.repository", "--out", str(out), "--target", "onnxruntime-cpu"],
        env={**os.environ, "YOLO_MODELS_FILE": str(models_file)},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out


# The session's server is stopped right after the last test that uses it (not at the end of the
# session): its models' memory (ONNX Runtime arenas grown by the load tests, several GB) would
# otherwise stay while the unit tests export and run graphs of their own, on a 24 GB machine.
_SESSION_SERVERS: list[TritonServer] = []
_LAST_SERVER_USER: list[str] = []


def pytest_sessionstart(session):
    """Without the test data, one line that says how to get it, instead of hundreds of failures."""
    lacking = missing(TEST_DATA)
    if lacking:
        pytest.exit(
            f"test data missing in {TEST_DATA}: {', '.join(lacking)}. Run `make test-data` (online), "
            "or set YOLO_TEST_DATA to a folder that holds it.",
            returncode=2,
        )


def pytest_collection_modifyitems(items):
    users = [item.nodeid for item in items if "triton" in getattr(item, "fixturenames", ())]
    _LAST_SERVER_USER[:] = users[-1:]


def pytest_runtest_teardown(item, nextitem):
    if _LAST_SERVER_USER and item.nodeid == _LAST_SERVER_USER[0]:
        for server in _SESSION_SERVERS:
            server.stop()


@pytest.fixture(scope="session")
def triton(model_repository, tmp_path_factory):
    build = tmp_path_factory.mktemp("build")
    server = TritonServer(model_repository, build, *free_ports(3), log=build / "tritonserver.log")
    try:
        server.start()
    except Exception:
        print((build / "tritonserver.log").read_text()[-5000:])
        raise
    _SESSION_SERVERS.append(server)
    yield server
    server.stop()
    assert server.process.returncode == 0, f"tritonserver exited with {server.process.returncode}; see {server.log}"


@pytest.fixture(params=["http", "grpc"])
def protocol(request) -> str:
    return request.param


@pytest.fixture
def client(triton, protocol):
    """A tritonclient client of the session's server, over HTTP and over gRPC."""
    from yolo_triton.client.async_detector import tritonclient_module

    url = triton.http_url if protocol == "http" else triton.grpc_url
    with tritonclient_module(protocol).InferenceServerClient(url) as c:
        yield c


class Reference:
    """Ultralytics' own predict on the same weights, conf, iou, imgsz and K, computed once per variant.
    rect=False for square variants: Ultralytics' .pt predict otherwise pads to the smallest stride
    multiple, while a square graph (like Ultralytics' own fixed-shape ONNX/TensorRT exports) takes
    an imgsz x imgsz square; rect=True (its default) for rect variants.
    nms=False selects YOLO26's NMS-free one-to-one head, as the export does. For the multi-label
    `*_eval` variants the reference is `ultralytics val`'s own predictions (its saved JSON), since
    multi-label NMS is what val runs and predict cannot."""

    def __init__(self, models: dict[str, Variant]):
        self.models = models
        self.cache: dict[str, dict[Path, object]] = {}

    def variant(self, name: str) -> Variant:
        """The served model of that name, or the built-in variant with its test weights."""
        return self.models.get(name) or replace(VARIANTS[name], weights=str(weights_of(name)))

    def __call__(self, name: str, images: list[Path]) -> dict:
        from matching import Detections
        from ultralytics import YOLO

        done = self.cache.setdefault(name, {})
        todo = [p for p in images if p not in done]
        v = self.variant(name)
        if todo and v.multi_label:
            from yolo_triton.client.evaluate import ultralytics_val

            found = ultralytics_val(Path(v.weights), todo, v).predictions
            for path in todo:
                done[path] = Detections.from_client(found[path.name])
        elif todo:
            model = YOLO(v.weights)
            for path in todo:
                done[path] = Detections.from_ultralytics(model.predict(str(path), **v.predict_arguments)[0])
        return {p: done[p] for p in images}


@pytest.fixture(scope="session")
def reference(served_models) -> Reference:
    return Reference(served_models)


MATCH_REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter):
    if MATCH_REPORT:
        terminalreporter.section("match against Ultralytics predict")
        for line in MATCH_REPORT:
            terminalreporter.write_line(line)
