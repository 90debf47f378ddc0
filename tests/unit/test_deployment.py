"""The GPU deployment, validated statically (no container engine or GPU here): one pinned release
train, Dockerfiles that build from it, and a compose file that `docker-compose config` accepts and
that carries the GPU reservation, memory pool, shm, healthcheck and ports the ensemble needs."""

import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import pyproject, release_settings
from only_distributions import command

from yolo_triton import canary
from yolo_triton.contract import LETTERBOX_PARAMS, VARIANTS, letterboxed_images
from yolo_triton.repository import ROOT
from yolo_triton.targets import TARGETS
from yolo_triton.tritonserver import (
    CUDA_MEMORY_POOL_BYTES,
    PYTHON_BACKEND_CONFIG,
    cuda_memory_pool_args,
    gpu_server_args,
    visible_gpu_count,
)

ENV = release_settings()
RELEASE = ENV["NGC_RELEASE"]
TAG = f"{ENV['YOLO_TRITON_VERSION']}-{RELEASE}"  # the images': this project's version, then the release
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))


def test_release_is_pinned_once():
    assert re.fullmatch(r"\d\d\.\d\d", RELEASE)
    readme = (ROOT / "README.md").read_text()
    assert f"NGC {RELEASE}" in readme and "Triton 2.51" in readme
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        path = ROOT / name
        if name in (".env", "README.md") or not path.is_file() or path.suffix in (".png", ".jpg"):
            continue
        text = path.read_text(errors="ignore")
        assert not re.search(r"(tritonserver|tensorrt):\d\d\.\d\d", text), (
            f"{name} pins a release itself; use NGC_RELEASE"
        )


def test_images_are_tagged_by_version_and_release():
    """A new version of the project is a new image tag (a tag the nodes and compose do not have
    yet), so an upgrade never keeps running the old images under the same name."""
    assert ENV["YOLO_TRITON_VERSION"] == pyproject()["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+-\d\d\.\d\d", TAG)


def test_memory_pool_fits_the_largest_handoff():
    handoff = max(
        v.max_batch_size
        * (
            letterboxed_images(v.imgsz).numpy_dtype.itemsize * 3 * v.imgsz**2
            + LETTERBOX_PARAMS.numpy_dtype.itemsize * 6
        )
        for v in VARIANTS.values()
    )
    assert CUDA_MEMORY_POOL_BYTES >= 3 * handoff


def test_memory_pool_is_the_same_everywhere():
    """make serve (gpu_server_args), docker compose (.env) and the repository's README pass one size."""
    assert int(ENV["CUDA_MEMORY_POOL_BYTES"]) == CUDA_MEMORY_POOL_BYTES
    (flag,) = cuda_memory_pool_args(gpus=1)
    assert flag in (ROOT / "model_repository" / "README.md").read_text()


# What `nvidia-smi -L` prints on a host of four NVIDIA H100 80GB HBM3 (the third with MIG on). These tests
# put a fake nvidia-smi that prints it on PATH: no GPU here.
SMI_LIST = """\
GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0b6f3a52-0000-4000-8000-000000000000)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-1c7e4b63-0000-4000-8000-000000000001)
GPU 2: NVIDIA H100 80GB HBM3 (UUID: GPU-2d8f5c74-0000-4000-8000-000000000002)
  MIG 3g.40gb     Device  0: (UUID: MIG-5a1b2c3d-0000-4000-8000-000000000003)
GPU 3: NVIDIA H100 80GB HBM3 (UUID: GPU-3e906d85-0000-4000-8000-000000000003)
"""


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    """A fake nvidia-smi (a stand-in: no GPU on these machines) first on PATH, printing SMI_LIST for -L;
    yields PATH with it."""
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text(f"#!/bin/sh\n[ \"$1\" = -L ] || exit 9\ncat <<'EOF'\n{SMI_LIST}EOF\n")
    smi.chmod(0o755)
    path = f"{smi.parent}:{Path(sys.executable).parent}:/usr/bin:/bin"  # this Python: yolo_triton imports
    monkeypatch.setenv("PATH", path)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return path


@pytest.mark.parametrize(
    ("visible", "count"),
    [
        (None, 4),  # unset: every GPU nvidia-smi lists
        ("", 0),  # set but empty: none
        ("1", 1),
        ("3,0", 2),
        ("0,1,7,2", 2),  # no GPU 7: the list ends there, as CUDA reads it
        ("-1", 0),
        ("0,0", 1),  # a GPU named twice counts once (and ends the list)
        ("GPU-1c7e4b63,GPU-3e906d85-0000-4000-8000-000000000003", 2),  # UUIDs, a prefix too
        ("MIG-5a1b2c3d-0000-4000-8000-000000000003", 1),
        ("GPU-", 0),  # a prefix of several names none
    ],
)
def test_visible_gpu_count(fake_smi, visible, count):
    env = {"PATH": fake_smi} if visible is None else {"PATH": fake_smi, "CUDA_VISIBLE_DEVICES": visible}
    assert visible_gpu_count(env) == count


def test_make_serve_gives_every_gpu_a_memory_pool(fake_smi, monkeypatch):
    """make serve (gpu_server_args): one pool flag per GPU Triton sees, numbered 0 to n-1 as Triton
    numbers the visible GPUs; without nvidia-smi, GPU 0's alone."""
    flags = [f"--cuda-memory-pool-byte-size={i}:{CUDA_MEMORY_POOL_BYTES}" for i in range(4)]
    assert list(gpu_server_args()) == flags
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert list(gpu_server_args()) == flags[:2]
    monkeypatch.setenv("PATH", "/nonexistent")
    assert list(gpu_server_args()) == flags[:1]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_builds_from_the_pinned_release(dockerfile):
    lines = [line.strip() for line in dockerfile.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "ARG NGC_RELEASE"
    assert re.fullmatch(r"FROM nvcr\.io/nvidia/(tritonserver|tensorrt):\$\{NGC_RELEASE\}-py3", lines[1])
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"{dockerfile.name}: COPY source {source} missing"


def _pins(path):
    return dict(line.split("==") for line in path.read_text().splitlines() if line and not line.startswith("#"))


@pytest.mark.parametrize("requirements", sorted((ROOT / "docker").glob("requirements-*.txt")), ids=lambda p: p.name)
def test_container_requirements_are_pinned_as_locally(requirements):
    local = _pins(ROOT / "requirements.txt")
    pins = _pins(requirements)  # every line name==version
    for name, version in pins.items():
        if name in local or name.replace("-headless", "") in local:
            assert version == local.get(name, local.get(name.replace("-headless", ""))), (
                f"{name} differs from requirements.txt"
            )


def _compose_config(**env) -> dict:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (.ci/run installs Debian's docker-compose)")
    out = subprocess.run(
        ["docker-compose", "--profile", "bench", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


@pytest.fixture(scope="module")
def compose():
    return _compose_config()


def _gpu(service, count=1):
    return service["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": count, "capabilities": ["gpu"]}
    ]


def test_compose_engine_builds_plans_on_the_gpu(compose):
    engine = compose["services"]["engine"]
    assert _gpu(engine) and engine["build"]["args"]["NGC_RELEASE"] == RELEASE
    assert engine["image"] == f"yolo-triton-engine:{TAG}"
    assert ENV["DETECTOR_TARGET"] == "tensorrt"  # the default of .env
    assert "--target tensorrt --out /models" in " ".join(engine["command"])
    assert "models:/models:rw" in engine["volumes"]


def test_compose_caches_in_tmp(compose):
    """Both images write CuPy's, CUDA's and PyTorch's caches under /tmp, as the chart's pods do
    (test_helm_chart.py: the same variables)."""
    for service in ("engine", "triton"):
        env = compose["services"][service]["environment"]
        assert env["HOME"] == "/tmp" and env["CUPY_CACHE_DIR"].startswith("/tmp/"), service


def _engine_script(compose) -> str:
    command = compose["services"]["engine"]["command"]
    assert command[:2] == ["sh", "-c"]
    return command[2]


@pytest.mark.parametrize("target", ["tensorrt", "onnxruntime-backend", "onnxruntime-gpu"])
def test_compose_detector_target(target):
    """DETECTOR_TARGET (.env, or the environment) picks the detector's runtime: the engine service
    writes that target; one outside the two GPU-container targets stops it before it writes anything."""
    script = _engine_script(_compose_config(DETECTOR_TARGET=target))
    assert f"--target {target} --out /models" in script
    dry = script.replace("exec python3 -m yolo_triton.repository", "echo would run")  # no Python, no export
    out = subprocess.run(["sh", "-c", dry], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    if target in ("tensorrt", "onnxruntime-backend"):
        assert TARGETS[target].on_gpu
        assert out.returncode == 0 and out.stdout.strip() == f"would run --target {target} --out /models"
    else:
        assert out.returncode == 2 and "DETECTOR_TARGET must be tensorrt or onnxruntime-backend" in out.stderr


def test_compose_serves_a_models_file_in_the_weights_folder(tmp_path):
    """A models.yaml in YOLO_WEIGHTS_DIR (mounted at /weights) is YOLO_MODELS_FILE; .pt files
    alone serve the built-in variants of their names (YOLO_WEIGHTS_DIR)."""
    script = _engine_script(_compose_config()).replace("/weights", str(tmp_path))
    dry = script.replace(
        "exec python3 -m yolo_triton.repository", 'echo "file=$YOLO_MODELS_FILE dir=$YOLO_WEIGHTS_DIR"'
    )
    run = lambda: subprocess.run(
        ["sh", "-c", dry], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}
    ).stdout.split(" --target")[0]
    assert run() == "file= dir="
    (tmp_path / "best.pt").write_bytes(b"")
    assert run() == f"file= dir={tmp_path}"
    (tmp_path / "models.yaml").write_text("ppe: {weights: best.pt}\n")
    assert run() == f"file={tmp_path}/models.yaml dir="


def test_canary_imports_in_the_triton_image():
    """The healthcheck and liveness probe run the canary in the Triton image, which has this package
    without its dependencies (no tritonclient) and docker/requirements-triton.txt's pins: it imports
    with those alone (those installed here; CuPy and nvImageCodec are the GPU's)."""
    installed = [f"{n}=={v}" for n, v in _pins(ROOT / "docker" / "requirements-triton.txt").items() if _installed(n)]
    run = subprocess.run(
        command(installed, "import", "yolo_triton.canary"),
        cwd=ROOT / "tests",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]


def _installed(name: str) -> bool:
    try:
        return bool(importlib.metadata.version(name))
    except importlib.metadata.PackageNotFoundError:
        return False


def test_engine_image_has_what_the_repository_writer_imports():
    """Both compose targets export the graph with create_onnx.py in the engine image (tensorrt also
    builds the plan with the image's own TensorRT); Triton's image serves it (its onnxruntime backend
    is part of NVIDIA's tritonserver image)."""
    pins = _pins(ROOT / "docker" / "requirements-engine.txt")
    assert {"torch", "ultralytics", "onnx", "onnxslim", "onnx-graphsurgeon", "onnxruntime"} <= set(pins)
    assert "FROM nvcr.io/nvidia/tensorrt:" in (ROOT / "docker" / "engine.Dockerfile").read_text()
    assert (
        "FROM nvcr.io/nvidia/tritonserver:${NGC_RELEASE}-py3\n" in (ROOT / "docker" / "triton.Dockerfile").read_text()
    )


def test_compose_triton_service(compose):
    triton = compose["services"]["triton"]
    assert _gpu(triton, "all") and ENV["TRITON_GPUS"] == "all" and triton["image"] == f"yolo-triton:{TAG}"
    assert _gpu(_compose_config(TRITON_GPUS="2")["services"]["triton"], "2")
    assert triton["depends_on"]["engine"]["condition"] == "service_completed_successfully"
    assert "--model-control-mode=none" in triton["command"]
    assert all(f"--backend-config={c}" in triton["command"] for c in PYTHON_BACKEND_CONFIG)  # as the embedded server
    assert sorted(triton["ports"]) == [f"127.0.0.1:{p}:{p}/tcp" for p in (8000, 8001, 8002)]  # BIND_ADDRESS unset
    assert triton["healthcheck"]["test"] == HEALTHCHECK  # a real inference; test_stub_fault.py runs it
    defaults = canary.parser().parse_args([])  # the healthcheck runs the canary with its default timeout and tries
    assert _seconds(triton["healthcheck"]["timeout"]) >= canary.longest_run_s(defaults.timeout, defaults.attempts)
    assert triton["restart"] == "unless-stopped"  # the healthcheck stops a server that cannot serve: this restarts it
    assert triton["shm_size"] and int(triton["ulimits"]["memlock"]) == -1


def _seconds(duration: str) -> float:
    """Compose's duration ("90s", "1m30s") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)([hms])", duration))


HEALTHCHECK = ["CMD", "python3", "-m", "yolo_triton.canary", "--url", "127.0.0.1:8000", "--kill-server", "1"]


def test_compose_triton_gets_a_memory_pool_on_every_gpu(compose, fake_smi, tmp_path):
    """The triton service's command, run by sh with `tritonserver` a stand-in that prints its arguments
    and the fake nvidia-smi of four GPUs: tritonserver gets the flags below and the pool flag of
    CUDA_MEMORY_POOL_BYTES (.env) for each GPU, as make serve passes them; a python3 that fails stops it."""
    command = [c.replace("$$", "$") for c in compose["services"]["triton"]["command"]]  # compose's escape
    assert command[:2] == ["sh", "-c"] and command[3] == "triton"
    tritonserver = tmp_path / "bin" / "tritonserver"
    tritonserver.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    tritonserver.chmod(0o755)
    run = subprocess.run(command, capture_output=True, text=True, env={"PATH": fake_smi}, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    pools = [f"--cuda-memory-pool-byte-size={i}:{ENV['CUDA_MEMORY_POOL_BYTES']}" for i in range(4)]
    assert run.stdout.splitlines() == [*command[4:], *pools]
    assert "--model-control-mode=none" in command and pools[0] not in command  # counted at start only
    (tmp_path / "bin" / "python3").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "python3").chmod(0o755)
    failed = subprocess.run(command, capture_output=True, text=True, env={"PATH": fake_smi}, cwd=tmp_path)
    assert failed.returncode == 1 and not failed.stdout


def test_compose_perf_analyzer_from_the_sdk_image(compose):
    bench = compose["services"]["perf_analyzer"]
    assert bench["image"] == f"nvcr.io/nvidia/tritonserver:{RELEASE}-py3-sdk" and bench["profiles"] == ["bench"]
    script = bench["command"][-1]  # sh -c: one perf_analyzer run per level of requests in flight
    assert bench["command"][:2] == ["sh", "-c"] and "perf_analyzer " in script
    assert "-u triton:8001" in script and "--input-data=/bench/perf_input.json" in script
    # levels named one by one ($$: compose's escape of the shell's $), not a range that steps by adding
    assert re.search(r"for c in 1 8 32 64 128 256; .*--concurrency-range=\$\$c:\$\$c ", script)
