"""The GPU runtime of `make serve`: which pip packages let it serve all on the GPU here, and their install.

    python -m yolo_triton.gpu_extra                                       # tells what it would install
    python -m yolo_triton.gpu_extra --install [--stamp .venv/.gpu-installed]   (what `make install` runs)
    python -m yolo_triton.gpu_extra --changed .venv/.gpu-installed    # one line if the choice differs now

Where `nvidia-smi` works, the CUDA version its driver supports (the header's "CUDA Version: 12.x" or
"13.x") picks requirements-gpu-cu12.txt or requirements-gpu-cu13.txt, all pip wheels, installed into
this interpreter's environment over requirements.txt:
- CUDA 13: the pytorch-gpu detector (pip's PyTorch, a CUDA 13 build, already in requirements.txt) with
  CuPy, nvImageCodec and nvJPEG for the preprocessing; the CPU `onnxruntime` stays.
- CUDA 12: the onnxruntime-gpu detector (ONNX Runtime GPU for CUDA 12, in place of the CPU
  `onnxruntime`: the same module), CuPy, nvImageCodec, nvJPEG and the CUDA 12 libraries they load.
Nowhere else is anything installed (a machine without an NVIDIA driver, a driver older than CUDA 12,
or YOLO_DEVICE=cpu). yolo_triton.repository.auto_target then serves on the GPU wherever these import
and a GPU is there. The stamp records the choice (the file and the driver's CUDA major); `make` asks
--changed each time and installs again where it differs: a driver installed later, or of another CUDA
major.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = {12: ROOT / "requirements-gpu-cu12.txt", 13: ROOT / "requirements-gpu-cu13.txt"}
# distributions that hold the same module as another one (onnxruntime and onnxruntime-gpu; each CuPy and
# nvImageCodec build and the other CUDA major's): uninstalled unless the chosen runtime pins them
REPLACED = (
    "onnxruntime",
    "onnxruntime-gpu",
    "cupy-cuda12x",
    "cupy-cuda13x",
    "nvidia-nvimgcodec-cu12",
    "nvidia-nvimgcodec-cu13",
)

DETECTOR = {REQUIREMENTS[12]: "ONNX Runtime GPU", REQUIREMENTS[13]: "PyTorch"}  # the detector's runtime

_CUDA_VERSION = re.compile(r"CUDA Version\s*:\s*(\d+)\.(\d+)")


def cuda_version(nvidia_smi_output: str | None) -> tuple[int, int] | None:
    """The CUDA version the driver supports, from nvidia-smi's header; None if it names none."""
    match = _CUDA_VERSION.search(nvidia_smi_output or "")
    return (int(match[1]), int(match[2])) if match else None


def nvidia_smi() -> str | None:
    """nvidia-smi's output, or None where there is no such command or it fails (no driver, no GPU)."""
    command = shutil.which("nvidia-smi")
    if command is None:
        return None
    try:
        done = subprocess.run([command], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def requirements_file(nvidia_smi_output: str | None) -> Path | None:
    """The GPU requirements for this driver, or None: no driver, or one older than CUDA 12. A driver
    newer than CUDA 13 runs CUDA 13 (both files have every wheel for Python 3.10-3.12)."""
    version = cuda_version(nvidia_smi_output)
    if version is None or version[0] < 12:
        return None
    return REQUIREMENTS[13] if version[0] >= 13 else REQUIREMENTS[12]


def decide(env: dict[str, str] | None = None, smi=nvidia_smi) -> tuple[Path | None, str, str | None]:
    """(the requirements file to install or None, why, the choice's key), for this machine. The key, what
    the stamp records, names the file and the driver's CUDA major ("requirements-gpu-cu13.txt cuda=13",
    "none cuda=none"); None under YOLO_DEVICE=cpu, which chooses nothing."""
    env = os.environ if env is None else env
    if env.get("YOLO_DEVICE", "auto") == "cpu":
        return None, "YOLO_DEVICE=cpu: nothing installed for the GPU", None
    output = smi()
    version = cuda_version(output)
    path = requirements_file(output)
    key = f"{path.name if path else 'none'} cuda={version[0] if version else 'none'}"
    if output is None:
        return None, "no NVIDIA driver here (nvidia-smi not found or failing): nothing installed for the GPU", key
    if path is None:
        named = f"CUDA {version[0]}.{version[1]}" if version else "no CUDA version"
        why = (
            f"the NVIDIA driver supports {named}; serving on the GPU needs CUDA 12 or newer: "
            "nothing installed for the GPU"
        )
        return None, why, key
    return path, f"NVIDIA driver for CUDA {version[0]}.{version[1]}: the GPU runtime from {path.name}", key


def choose(env: dict[str, str] | None = None, smi=nvidia_smi) -> tuple[Path | None, str]:
    """(the requirements file to install or None, why), for this machine."""
    return decide(env, smi)[:2]


_STAMP_KEY = re.compile(r"(\S+ cuda=\S+): ")


def recorded(stamp: Path) -> str | None:
    """The key of the choice a stamp records; None where there is no stamp or it records none (an
    older layout)."""
    try:
        match = _STAMP_KEY.match(Path(stamp).read_text())
    except OSError:
        return None
    return match[1] if match else None


def changed(stamp: Path, env: dict[str, str] | None = None, smi=nvidia_smi) -> str | None:
    """Why the choice the stamp records is not this machine's any more (a driver installed, removed, or
    of another CUDA major), or None: the same choice, no stamp, or YOLO_DEVICE=cpu."""
    if not Path(stamp).exists():
        return None
    _, why, key = decide(env, smi)
    before = recorded(stamp)
    if key is None or key == before:
        return None
    return f"{stamp} records {before or 'no CUDA major (an older stamp)'}, now {key} ({why})"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path, python: tuple[int, int] | None = None) -> dict[str, str]:
    """{name: version} of the file's `name==version` lines whose marker holds for this Python
    (or for `python`)."""
    from packaging.markers import Marker

    env = (
        None
        if python is None
        else {"python_version": f"{python[0]}.{python[1]}", "python_full_version": f"{python[0]}.{python[1]}.0"}
    )
    result = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, _, marker = (part.strip() for part in line.partition(";"))
        if marker and not Marker(marker).evaluate(env):
            continue
        name, version = (part.strip() for part in requirement.split("=="))
        result[_canonical(name)] = version
    return result


def _installed() -> dict[str, importlib.metadata.Distribution]:
    return {_canonical(d.metadata["Name"]): d for d in importlib.metadata.distributions() if d.metadata["Name"]}


def _libraries(dist: importlib.metadata.Distribution) -> list:
    """Its shared libraries and extension modules (the files another package may overwrite)."""
    return [f for f in dist.files or () if ".so" in f.name and not str(f).startswith("..")]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def damaged(names) -> list[str]:
    """Those of the installed distributions `names` whose shared libraries are missing, or were
    overwritten by another distribution that holds the same paths: onnxruntime-gpu after requirements.txt
    put the CPU onnxruntime back (and its uninstall removed the files of both), nvidia-cudnn-cu12 after
    PyTorch's nvidia-cudnn-cu13 was reinstalled into nvidia/cudnn/lib. pip sees neither."""
    installed = _installed()
    owners = defaultdict(set)
    for name, dist in installed.items():
        for f in _libraries(dist):
            owners[str(f)].add(name)
    result = []
    for name in names:
        dist = installed.get(name)
        if dist is None:
            continue
        for f in _libraries(dist):
            path = Path(dist.locate_file(f))
            shared = len(owners[str(f)]) > 1
            if not path.exists() or (shared and f.hash is not None and _sha256(path) != f.hash.value):
                result.append(name)
                break
    return result


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def wanted(path: Path) -> dict[str, str]:
    """{name: version} that the GPU runtime of this file leaves installed: its pins, and for CUDA 13 the
    CPU `onnxruntime` of requirements.txt (nothing replaces it there; a CUDA 12 runtime before had)."""
    result = pins(path)
    if path == REQUIREMENTS[13]:
        result["onnxruntime"] = pins(ROOT / "requirements.txt")["onnxruntime"]
    return result


def _sharing(names, installed: dict[str, importlib.metadata.Distribution]) -> set[str]:
    """The other installed distributions that have a library at the same path as one of `names`:
    uninstalling one of those removes the other's file too."""
    paths = {str(f) for name in names for f in _libraries(installed[name])}
    return {
        name for name, dist in installed.items() if name not in names and any(str(f) in paths for f in _libraries(dist))
    }


def install(path: Path) -> None:
    """Install the file's pins here: first uninstall what holds the same modules (for CUDA 12 the CPU
    onnxruntime; for CUDA 13 onnxruntime-gpu and the whole CUDA 12 runtime, after a driver upgrade; the
    other CUDA major's CuPy and nvImageCodec), then pip, then reinstall whatever package another one
    has overwritten or removed (the CPU onnxruntime, PyTorch's cuDNN: pip sees neither)."""
    keep = wanted(path)
    installed = _installed()
    replaced = set(REPLACED)
    if path == REQUIREMENTS[13]:  # the CUDA 12 runtime goes too (none of it is PyTorch's, which is CUDA 13)
        replaced |= {name for name in pins(REQUIREMENTS[12]) if name.endswith("-cu12")}
    replaced = sorted(name for name in replaced if name in installed and name not in keep)
    check = set(keep) | _sharing(replaced, installed)
    if replaced:
        _pip("uninstall", "--quiet", "--yes", *replaced)
    extra = [f"{name}=={version}" for name, version in keep.items() if name not in pins(path)]
    # --no-warn-conflicts: the project's own metadata names `onnxruntime`, which onnxruntime-gpu provides
    _pip("install", "--quiet", "--no-warn-conflicts", "-r", str(path), *extra)
    broken = damaged(sorted(check))
    if broken:
        print(f"reinstalling {', '.join(broken)}: another package had overwritten or removed its libraries", flush=True)
        versions = {name: dist.version for name, dist in _installed().items()} | keep
        _pip("install", "--quiet", "--no-deps", "--force-reinstall", *(f"{name}=={versions[name]}" for name in broken))
        still = damaged(broken)
        if still:
            raise SystemExit(f"{', '.join(still)}: libraries still missing or overwritten after reinstalling")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--install", action="store_true", help="install the chosen requirements into this environment")
    parser.add_argument(
        "--stamp",
        type=Path,
        help="file written once the choice is done (installed, or nothing to install), recording the choice",
    )
    parser.add_argument(
        "--changed",
        type=Path,
        metavar="STAMP",
        help="print one line if the choice this stamp records is not this machine's now (else nothing); "
        "`make` runs --install again then",
    )
    args = parser.parse_args(argv)
    if args.changed:
        why = changed(args.changed)
        if why:
            print(f"GPU runtime: {why}", flush=True)
        return 0
    before = recorded(args.stamp) if args.stamp else None
    path, why, key = decide()
    print(f"GPU runtime: {why}", flush=True)
    if before and key and before != key:
        print(f"GPU runtime: chosen again: {args.stamp} recorded {before}, now {key}", flush=True)
    if args.install and path is not None:
        print(
            f"Installing {path.name} into {sys.prefix} (CuPy, nvImageCodec, {DETECTOR[path]}, CUDA libraries) ...",
            flush=True,
        )
        install(path)
        print(f"Installed {path.name}: `make serve` serves on the GPU (YOLO_DEVICE=cpu serves on the CPU).", flush=True)
    if args.install and args.stamp and key is not None:
        # YOLO_DEVICE=cpu leaves no stamp, so a later `make serve` without it still installs the GPU runtime
        args.stamp.write_text(f"{key}: {why}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
