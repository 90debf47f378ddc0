"""A server fault: the Python-backend stubs of one detector (each of its instances) killed (SIGKILL)
under load.

What Triton 2.51 does, and what this test holds it to: requests already at that model and every
later one fail at once with a clear error naming the unhealthy stub (no hang, no wrong answer);
the other models keep serving; the server process stays up; the stub is not restarted, and
/v2/health/live and /v2/health/ready stay 200. `python -m yolo_triton.canary` (a real inference
per ensemble) does notice: run as the Helm chart's liveness probe it fails (the pod is restarted),
run as docker compose's healthcheck it stops the server (compose's restart policy starts it again);
on a healthy server both pass and stop nothing (docs/limits.md)."""

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
import yaml

from yolo_triton.client.async_detector import image_input
from yolo_triton.repository import ROOT
from yolo_triton.targets import CPU_DETECTOR_INSTANCES
from yolo_triton.tritonserver import TritonServer, free_ports

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


def stubs_of(server, model: str) -> list[int]:
    """The stub processes of the model's detector instances."""
    children = subprocess.run(["pgrep", "-P", str(server.process.pid), "-a"], capture_output=True, text=True).stdout
    pids = [int(line.split()[0]) for line in children.splitlines() if f"/{model}_detector/1/model.py" in line]
    assert len(pids) == CPU_DETECTOR_INSTANCES, children
    return pids


def canary(server, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "yolo_triton.canary", "--url", server.http_url, *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )


def chart_probe(server) -> subprocess.CompletedProcess:
    """The chart's liveness probe (test_helm_chart.py checks the rendered command is this one)."""
    return canary(server, "--attempts", "1")


def compose_healthcheck(server) -> subprocess.CompletedProcess:
    """docker-compose.yml's healthcheck command, with this server's address and PID for PID 1."""
    test = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["triton"]["healthcheck"]["test"]
    assert test[:4] == ["CMD", "python3", "-m", "yolo_triton.canary"]
    args = [server.http_url if a == "127.0.0.1:8000" else str(server.process.pid) if a == "1" else a for a in test[4:]]
    assert args == ["--url", server.http_url, "--kill-server", str(server.process.pid)]
    return canary(server, *args[2:])


def test_killed_stub_fails_its_requests_cleanly_and_the_canary_notices(server, test_images):
    assert canary(server).returncode == chart_probe(server).returncode == compose_healthcheck(server).returncode == 0
    assert server.process.poll() is None  # a healthy server is left alone
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
        for pid in stubs_of(server, VICTIM):  # every instance of the detector
            os.kill(pid, signal.SIGKILL)
        time.sleep(1)
        after = list(pool.map(request, [VICTIM, BYSTANDER] * 8))
    assert before == ["ok"] * 8
    assert all("Stub process 'yolov11_nano_detector_0_" in r and "is not healthy" in r for r in after[0::2]), after[
        0::2
    ]
    assert after[1::2] == ["ok"] * 8  # the other model is unaffected
    assert server.process.poll() is None
    base = f"http://{server.http_url}"
    assert httpx.get(f"{base}/v2/health/live").status_code == 200  # Triton 2.51 does not see it
    assert httpx.get(f"{base}/v2/health/ready").status_code == 200
    found = canary(server)
    assert found.returncode == 1 and f"canary: {VICTIM}:" in found.stderr and BYSTANDER not in found.stderr, (
        found.stderr
    )
    assert chart_probe(server).returncode == 1  # the pod would be restarted
    assert server.process.poll() is None
    healthcheck = compose_healthcheck(server)
    assert healthcheck.returncode == 1 and f"SIGTERM to {server.process.pid}" in healthcheck.stderr, healthcheck.stderr
    assert server.process.wait(120) is not None  # the server stopped: compose's restart policy starts it anew
