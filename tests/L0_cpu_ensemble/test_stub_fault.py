"""A server fault: the Python-backend stub of one detector killed (SIGKILL) under load.

What Triton 2.51 does, and what this test holds it to: requests already at that model and every
later one fail at once with a clear error naming the unhealthy stub (no hang, no wrong answer);
the other models keep serving; the server process stays up; the stub is not restarted, and
/v2/health/live and /v2/health/ready stay 200. `python -m yolo_triton.canary` (a real inference
per ensemble) does notice, so an orchestrator can restart the server (README: Limits and errors)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import tritonclient.grpc as grpcclient

from yolo_triton.client.core import image_input
from yolo_triton.server import TritonServer, free_ports

VICTIM, BYSTANDER = "yolov11_nano", "yolov8_nano"


@pytest.fixture
def server(model_repository, tmp_path):
    """A server of its own (this test breaks it), on a copy of two variants of the session's repository."""
    repo = tmp_path / "repo"
    for name in ("preprocess", VICTIM, f"{VICTIM}_detector", BYSTANDER, f"{BYSTANDER}_detector"):
        shutil.copytree(model_repository / name, repo / name)
    server = TritonServer(repo, tmp_path / "build", *free_ports(3), log=tmp_path / "tritonserver.log")
    server.start()
    yield server
    server.stop()


def stub_of(server, model: str) -> int:
    children = subprocess.run(["pgrep", "-P", str(server.process.pid), "-a"], capture_output=True, text=True).stdout
    (pid,) = [int(line.split()[0]) for line in children.splitlines() if f"/{model}_detector/1/model.py" in line]
    return pid


def canary(server) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "yolo_triton.canary", "--url", server.http_url],
                          capture_output=True, text=True, timeout=120)


def test_killed_stub_fails_its_requests_cleanly_and_the_canary_notices(server, test_images):
    assert canary(server).returncode == 0
    photo = test_images[0].read_bytes()

    def request(model):
        with grpcclient.InferenceServerClient(server.grpc_url) as c:
            try:
                result = c.infer(model, [image_input([photo])], client_timeout=60)
                return "ok" if result.as_numpy("num_dets")[0, 0] > 0 else "empty"
            except Exception as e:
                return str(e)

    with ThreadPoolExecutor(4) as pool:
        before = list(pool.map(request, [VICTIM] * 8))
        os.kill(stub_of(server, VICTIM), signal.SIGKILL)
        time.sleep(1)
        after = list(pool.map(request, [VICTIM, BYSTANDER] * 8))
    assert before == ["ok"] * 8
    assert all("Stub process 'yolov11_nano_detector_0_0' is not healthy" in r for r in after[0::2]), after[0::2]
    assert after[1::2] == ["ok"] * 8  # the other model is unaffected
    assert server.process.poll() is None
    base = f"http://{server.http_url}"
    assert httpx.get(f"{base}/v2/health/live").status_code == 200  # Triton 2.51 does not see it
    assert httpx.get(f"{base}/v2/health/ready").status_code == 200
    found = canary(server)
    assert found.returncode == 1 and f"canary: {VICTIM}:" in found.stderr and BYSTANDER not in found.stderr, found.stderr
