"""Run the real Triton server that PyPI's nvidia-pytriton wheel carries (Triton 2.51, NGC 24.10).

The wheel holds `tritonserver`, the Python backend and one backend stub per Python version. The
stub embeds the Python of the first `python3` on PATH and imports from its environment, so the
server is started with this interpreter's bin/ first on PATH (the project's virtualenv).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"  # the embedded server is for this machine only

# Each Python-backend stub exchanges tensors with the server through a shared-memory region.
# Triton's default (1 MiB, grown 1 MiB at a time) maps the region anew at every growth and keeps
# the old mappings, so under load the server's and the stubs' RSS climb in steps for minutes (an
# 85-mapping preprocess region in a soak, benchmarks/RESULTS.md); started at 64 MiB and grown
# 64 MiB at a time, it settles within the warm-up after a few growths at most. Each region is
# resident whole, once per stub (every instance of every model): 64 MiB, not more, at the start.
# docker-compose.yml and the Helm chart pass the same flags (tests check).
PYTHON_BACKEND_CONFIG = ("python,shm-default-byte-size=67108864", "python,shm-growth-byte-size=67108864")

# Triton's CUDA memory pool on each GPU (--cuda-memory-pool-byte-size=<gpu>:N): every preprocess ->
# detector hand-off (1.2 MB an image) passes through the pool of the GPU that preprocess ran on, both
# ways into the Python stubs. 512 MB ran out at 128-256 requests in flight on an H100 ("failed to copy
# data: invalid argument"); 2 GiB holds 256 in flight several times over; Triton's 64 MB default fits
# 50 images. docker compose reads the same figure from .env (CUDA_MEMORY_POOL_BYTES), the Helm chart
# from gpu.cudaMemoryPoolBytes.
CUDA_MEMORY_POOL_BYTES = 2 * 1024**3


def wheel_root() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "nvidia-pytriton (it carries tritonserver) is not installed: "
            'run `make install`, or pip install ".[embedded]" in this project\'s checkout'
        )
    return Path(spec.submodule_search_locations[0]).parent


def backend_directory(build_dir: Path) -> Path:
    """A backend directory whose python/ holds the Python backend and the stub for this Python."""
    triton = wheel_root() / "pytriton" / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = triton / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise RuntimeError(f"nvidia-pytriton has no Python backend stub for Python {version}")
    python = build_dir / "python"
    python.mkdir(parents=True, exist_ok=True)
    for src in (*sorted((triton / "backends" / "python").glob("*.*")), stub):
        if src.is_file() and not (python / src.name).exists():
            shutil.copy2(src, python / src.name)
    return build_dir


def server_environment() -> dict[str, str]:
    """PATH with this interpreter first (for the stub), the wheel's bundled libraries, and the pip CUDA
    libraries of this environment."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    libs = [str(wheel_root() / "nvidia_pytriton.libs")]
    base_lib = Path(sys.base_prefix) / "lib"
    if any(base_lib.glob("libpython3*.so*")):  # the stub then embeds the very Python of this env
        libs.append(str(base_lib))
    # The CUDA libraries of the pip wheels (requirements-gpu-cu*.txt, PyTorch's) are loaded by soname, and
    # the GPU models' CuPy (NVRTC) and ONNX Runtime (CUDA provider) find them only on the library path.
    # The per-library folders (CUDA 12's layout, nvidia/<library>/lib) come before CUDA 13's single
    # nvidia/cu13/lib: where both are installed (a CUDA 12 driver; PyTorch brings CUDA 13), a soname that
    # both ship (libcurand.so.10) must be CUDA 12's. Only folders that exist; none loads on the CPU path.
    nvidia = Path(sysconfig.get_paths()["platlib"]) / "nvidia"
    folders = [p for p in nvidia.glob("*/lib") if p.is_dir()] if nvidia.is_dir() else []
    libs += [
        str(p)
        for p in sorted(folders, key=lambda p: (re.fullmatch(r"cu\d+", p.parent.name) is not None, p.parent.name))
    ]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
    env.setdefault("YOLO_OFFLINE", "1")
    return env


def free_ports(n: int) -> list[int]:
    """n TCP ports free on 127.0.0.1 now (for servers started beside another one)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind((HOST, 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def ports_in_use(ports: dict[str, int]) -> dict[str, int]:
    """Those of the named ports (http, grpc, metrics) that something already listens on at 127.0.0.1:
    tritonserver would start, fail to bind one and exit."""
    taken = {}
    for name, port in ports.items():
        with socket.socket() as s:
            s.setsockopt(
                socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
            )  # as Triton binds: a closed port's TIME_WAIT is free
            try:
                s.bind((HOST, port))
            except OSError:
                taken[name] = port
    return taken


def _die_with_parent() -> None:
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class TritonServer:
    """tritonserver on 127.0.0.1, started and stopped from Python (also a context manager)."""

    model_repository: Path
    build_dir: Path
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    log: Path | None = None  # server output; None: inherit this process's stdout/stderr
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def http_url(self) -> str:
        return f"{HOST}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    def command(self) -> list[str]:
        binary = wheel_root() / "pytriton" / "tritonserver" / "bin" / "tritonserver"
        return [
            str(binary),
            f"--model-repository={Path(self.model_repository).resolve()}",
            f"--backend-directory={backend_directory(Path(self.build_dir) / 'backends').resolve()}",
            f"--http-address={HOST}",
            f"--http-port={self.http_port}",
            f"--grpc-address={HOST}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={HOST}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--model-control-mode=none",  # no load/unload API: the repository is fixed at start
            "--strict-readiness=true",
            "--exit-on-error=true",
            *(f"--backend-config={c}" for c in PYTHON_BACKEND_CONFIG),
            *self.extra_args,
        ]

    def start(self, timeout: float = 300.0) -> TritonServer:
        out = open(self.log, "ab") if self.log else None
        # its own process group, so a Ctrl-C reaches this process, which then stops the server in
        # order; and it dies with this process (parent-death signal) should this one be killed
        self.process = subprocess.Popen(
            self.command(),
            env=server_environment(),
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.wait_ready(timeout)
        return self

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"tritonserver exited with code {self.process.returncode}"
                    + (f"; see {self.log}" if self.log else "")
                )
            if self.is_ready():
                return
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"tritonserver not ready after {timeout:.0f} s" + (f"; see {self.log}" if self.log else ""))

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM: Triton stops taking requests, finishes those in flight, unloads, exits."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


_GPU_LINE = re.compile(r"^GPU (\d+): .*\(UUID: (GPU-[^)]+)\)", re.MULTILINE)
_MIG_UUID = re.compile(r"\(UUID: (MIG-[^)]+)\)")


def visible_gpu_count(env: dict[str, str] | None = None) -> int:
    """How many GPUs CUDA, and so Triton, sees here (Triton numbers them 0 to n-1): the GPUs of
    `nvidia-smi -L`, narrowed by CUDA_VISIBLE_DEVICES as CUDA reads it (indices or UUIDs, a UUID's
    prefix too, up to the first entry that names no GPU; set but empty: none), which nvidia-smi itself
    ignores. 0 where nvidia-smi is missing or fails."""
    env = os.environ if env is None else env
    command = shutil.which("nvidia-smi", path=env.get("PATH"))
    if command is None:
        return 0
    try:
        done = subprocess.run([command, "-L"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0
    if done.returncode != 0:
        return 0
    gpus = _GPU_LINE.findall(done.stdout)  # (index, UUID)
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return len(gpus)
    uuids = [uuid for _, uuid in gpus] + _MIG_UUID.findall(done.stdout)
    seen: list[str] = []
    for entry in (e.strip() for e in visible.split(",")):
        if entry.isdigit():
            named = [uuid for index, uuid in gpus if int(index) == int(entry)]
        else:
            named = [uuid for uuid in uuids if entry and uuid.startswith(entry)]
        if len(named) != 1 or named[0] in seen:  # no such GPU (or an ambiguous or repeated one): the list ends
            break
        seen.append(named[0])
    return len(seen)


def cuda_memory_pool_args(byte_size: int = CUDA_MEMORY_POOL_BYTES, gpus: int | None = None) -> tuple[str, ...]:
    """Triton's CUDA memory pool of byte_size on each of the `gpus` GPUs (default: those visible here,
    GPU 0 at least): the pool of every GPU holds the hand-offs of the preprocess instances on it."""
    count = max(visible_gpu_count() if gpus is None else gpus, 1)
    return tuple(f"--cuda-memory-pool-byte-size={gpu}:{byte_size}" for gpu in range(count))


def gpu_server_args() -> tuple[str, ...]:
    """Flags for serving the GPU path: Triton's CUDA memory pool on every visible GPU (the preprocess ->
    detector hand-offs live there), as docker compose passes it (the Helm chart's pods have one GPU
    each: GPU 0's; tests check)."""
    return cuda_memory_pool_args()


INFERENCE_KEY_ENV = "YOLO_TRITON_INFERENCE_KEY"  # make serve: NAME=VALUE, the header inference needs


def inference_key_args(key: str) -> tuple[str, ...]:
    """Flags that make inference over HTTP and gRPC need a header, given as NAME=VALUE (Triton's
    restricted `inference` API group; health, metadata and model config stay open). Over gRPC
    Triton reads it as triton-grpc-protocol-NAME, which yolo_triton.client also sends."""
    from yolo_triton.client.connection import parse_headers

    ((name, value),) = parse_headers([key]).items()
    if not value:
        raise ValueError(f"header {name!r}: the key must not be empty")
    return (f"--http-restricted-api=inference:{name}={value}", f"--grpc-restricted-protocol=inference:{name}={value}")


def main(argv: list[str] | None = None) -> None:
    """python -m yolo_triton.tritonserver [BYTES]: the pool flags for the GPUs visible here, on one line
    (docker-compose.yml's triton service adds them to tritonserver's flags at start)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m yolo_triton.tritonserver",
        description="Print Triton's CUDA memory pool flags, one per GPU visible here (nvidia-smi -L, "
        "CUDA_VISIBLE_DEVICES), GPU 0's at least.",
    )
    parser.add_argument(
        "byte_size", nargs="?", type=int, default=CUDA_MEMORY_POOL_BYTES, help="each pool's size (default: %(default)s)"
    )
    print(" ".join(cuda_memory_pool_args(parser.parse_args(argv).byte_size)))


if __name__ == "__main__":
    main()
