"""A server fault: the Python-backend stubs of one detector (each of its instances) killed (SIGKILL)
under load.

What Triton 2.51 does, and what this test holds it to: requests already at that model and every
later one fail at once with a clear error naming the unhealthy stub (no hang, no wrong answer);
the other models keep serving; the server process stays up; the stub is not restarted, and
/v2/health/live and /v2/health/ready stay 200. `python -m yolo_triton.canary` (a real inference
per ensemble) does notice: run as the Helm chart's liveness probe it fails (the pod is restarted),
run as docker compose's healthcheck it stops the server (compose's restart policy starts it again);
on a healthy server both pass and stop nothing (docs/limits.md). A server saturated past its
queues is alive: the canary passes and stops nothing for as long as the overload lasts."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import tritonclient.grpc as grpcclient
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from yolo_triton.client.async_detector import image_input
from yolo_triton.repository import ROOT
from yolo_triton.targets import CPU_DETECTOR_INSTANCES
from yolo_triton.tritonserver import TritonServer, free_ports

VICTIM, BYSTANDER = "yolov11_nano", "yolov8_nano"


def own_server(model_repository, tmp_path, variants, queue: int | None = None) -> TritonServer:
    """A server of its own (these tests break it) on a copy of variants of the session's repository;
    `queue`: the detectors' max_queue_size, so that a small load overflows it."""
    repo = tmp_path / "repo"
    for name in ("preprocess", *(m for v in variants for m in (v, f"{v}_detector"))):
        shutil.copytree(model_repository / name, repo / name)
        if queue and name.endswith("_detector"):
            path = repo / name / "config.pbtxt"
            config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
            config.dynamic_batching.default_queue_policy.max_queue_size = queue
            path.write_text(text_format.MessageToString(config, as_utf8=True))
    return TritonServer(repo, tmp_path / "build", *free_ports(3), log=tmp_path / "tritonserver.log").start()


@pytest.fixture
def server(model_repository, tmp_path):
    server = own_server(model_repository, tmp_path, (VICTIM, BYSTANDER))
    yield server
    server.stop()


@pytest.fixture
def small_queue_server(model_repository, tmp_path):
    server = own_server(model_repository, tmp_path, (VICTIM,), queue=2)
    yield server
    server.stop(timeout=5)  # a broken server: no need to let it drain


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


CHART_PROBE_ARGS = ("--timeout", "5", "--attempts", "1")
CHART_FAILURE_THRESHOLD = COMPOSE_RETRIES = 3  # consecutive failed probes that restart (test_helm_chart.py, compose)


def chart_probe(server) -> subprocess.CompletedProcess:
    """The chart's liveness probe (test_helm_chart.py checks the rendered command is this one)."""
    return canary(server, *CHART_PROBE_ARGS)


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


def test_overload_is_alive_and_a_killed_stub_is_not(small_queue_server, test_images):
    """A load generator keeps the detector's queue (2 requests here) overflowing while the chart's
    liveness probe and compose's healthcheck run as many times in a row as would restart the server:
    every one passes (refused by the full queue, or slow while other requests are answered: both
    busy, not dead) and the server keeps running. Then, under the same load, its stubs are killed:
    the probe fails and the healthcheck stops the server, as on an idle one."""
    server, photo = small_queue_server, test_images[0].read_bytes()
    outcomes, stop = Counter(), threading.Event()

    def load():
        with grpcclient.InferenceServerClient(server.grpc_url) as c:
            while not stop.is_set():
                try:
                    c.infer(VICTIM, [image_input([photo])], client_timeout=60)
                    outcomes["served"] += 1
                except Exception as e:
                    outcomes["refused" if "Exceeds maximum queue size" in str(e) else "other"] += 1

    clients = [threading.Thread(target=load) for _ in range(8)]
    for client in clients:
        client.start()
    try:
        time.sleep(2)
        before = outcomes.copy()
        probes = [chart_probe(server) for _ in range(CHART_FAILURE_THRESHOLD)]
        probes += [compose_healthcheck(server) for _ in range(COMPOSE_RETRIES)]
        assert all(p.returncode == 0 for p in probes), [p.stderr for p in probes]
        assert any(f"canary: {VICTIM}: busy, answering other requests: " in p.stderr for p in probes)
        assert server.process.poll() is None and server.is_ready()
        during = outcomes - before
        assert during["refused"] and during["served"] and not during["other"], during  # saturated past its queue

        for pid in stubs_of(server, VICTIM):
            os.kill(pid, signal.SIGKILL)
        time.sleep(1)
        probe = chart_probe(server)
        assert probe.returncode == 1 and f"canary: {VICTIM}: dead: " in probe.stderr, probe.stderr
        healthcheck = compose_healthcheck(server)
        assert healthcheck.returncode == 1 and f"SIGTERM to {server.process.pid}" in healthcheck.stderr
    finally:
        stop.set()
        for client in clients:
            client.join()
