"""The HTTP gateway (`yolo-triton gateway`, FastAPI) in front of the real server: POST
/predict/{model} with an uploaded file gives the client's detections as JSON; refused images, unknown
models, oversized uploads and a missing server are clean errors; the OpenAPI schema describes it."""

import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import CUSTOM_MODEL, YOLO_TRITON
from matching import Detections, unpaired

from yolo_triton.client import detect
from yolo_triton.contract import MAX_IMAGE_BYTES
from yolo_triton.tritonserver import free_ports


def start_gateway(triton_url: str, tmp_path: Path):
    (port,) = free_ports(1)
    log = open(tmp_path / f"gateway_{port}.log", "wb")
    process = subprocess.Popen(
        [str(YOLO_TRITON), "gateway", "--port", str(port), "--url", triton_url], stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{base}/openapi.json", timeout=1)
            return process, base
        except httpx.TransportError:
            assert process.poll() is None and time.monotonic() < deadline, (
                tmp_path / f"gateway_{port}.log"
            ).read_text()
            time.sleep(0.2)


@pytest.fixture(scope="module")
def gateway(triton, tmp_path_factory):
    process, base = start_gateway(triton.grpc_url, tmp_path_factory.mktemp("gateway"))
    yield base
    process.terminate()
    process.wait(30)


def test_predict_returns_the_clients_detections(gateway, triton, test_images):
    photos = [test_images[0], test_images[5], test_images[-2]]  # bus.jpg is test_images[-2]
    expected = detect(photos, model="yolov11_nano", url=triton.grpc_url)
    for photo, want in zip(photos, expected):
        response = httpx.post(
            f"{gateway}/predict/yolov11_nano",
            files={"file": (photo.name, photo.read_bytes(), "image/jpeg")},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == "yolov11_nano" and body["image"] == photo.name
        # the JSON rounds scores to 5 decimals and boxes to 2: within unpaired's tolerances
        assert unpaired(Detections.from_client(body["detections"]), Detections.from_client(want.detections)) == 0
        assert all(set(d) == {"class_id", "class_name", "score", "box"} for d in body["detections"])
    assert httpx.get(f"{gateway}/health").json()["status"] == "ready"


def test_errors(gateway, test_images):
    post = lambda model, data: httpx.post(f"{gateway}/predict/{model}", files={"file": ("x.jpg", data)}, timeout=120)
    refused = post("yolov11_nano", b"GIF89a not really")
    assert refused.status_code == 400 and "cannot decode" in refused.json()["detail"]
    unknown = post("yolov99_giant", test_images[0].read_bytes())
    assert unknown.status_code == 404 and "'yolov99_giant' is not served" in unknown.json()["detail"]
    too_big = post("yolov11_nano", b"\0" * (MAX_IMAGE_BYTES + 1))
    assert too_big.status_code == 413
    assert post("yolov11_nano", test_images[0].read_bytes()).status_code == 200  # and it still serves


def test_no_triton_is_503(tmp_path, test_images):
    (dead,) = free_ports(1)
    process, base = start_gateway(f"127.0.0.1:{dead}", tmp_path)
    try:
        response = httpx.post(
            f"{base}/predict/yolov11_nano", files={"file": ("x.jpg", test_images[0].read_bytes())}, timeout=60
        )
        assert response.status_code == 503 and "no Triton server" in response.json()["detail"]
        assert httpx.get(f"{base}/health").status_code == 503
    finally:
        process.terminate()
        process.wait(30)


def test_openapi_schema(gateway):
    schema = httpx.get(f"{gateway}/openapi.json").json()
    operation = schema["paths"]["/predict/{model}"]["post"]
    assert "multipart/form-data" in operation["requestBody"]["content"]
    assert {"200", "400", "404", "413", "503"} <= set(operation["responses"])
    prediction = schema["components"]["schemas"]["Prediction"]["properties"]
    assert set(prediction) == {"model", "image", "detections"}


def test_a_models_own_class_names(gateway, test_images):
    """The custom model answers with the names of its weights (tests/fixtures/custom_weights.py)."""
    names = set()
    for photo in test_images[:6]:
        response = httpx.post(
            f"{gateway}/predict/{CUSTOM_MODEL}",
            files={"file": (photo.name, photo.read_bytes(), "image/jpeg")},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        names |= {(d["class_id"], d["class_name"]) for d in response.json()["detections"]}
    assert (0, "pedestrian") in names and names <= {(0, "pedestrian"), (1, "vehicle"), (2, "pet")}
