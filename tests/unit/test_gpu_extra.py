"""`make serve` on an NVIDIA machine installs the GPU runtime for the driver's CUDA major, and nothing
anywhere else: the choice from nvidia-smi's output, the pinned requirements files, the clobber repair of
the install, the Makefile wiring and the library path the Triton stub gets. No GPU or network needed."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from yolo_triton import gpu_extra, tritonserver
from yolo_triton.gpu_extra import (
    REQUIREMENTS,
    choose,
    cuda_version,
    pins,
    requirements_file,
)
from yolo_triton.repository import ROOT

# nvidia-smi's output in the layout of drivers for CUDA 12.4 (R550), 12.9 (R575) and 13.0 (R580)
SMI_CUDA_12_4 = """\
Tue Nov 25 09:12:31 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|                                         |                        |               MIG M. |
|=========================================+========================+======================|
|   0  NVIDIA RTX A6000               Off |   00000000:01:00.0 Off |                  Off |
| 30%   34C    P8             21W /  300W |       1MiB /  49140MiB |      0%      Default |
|                                         |                        |                  N/A |
+-----------------------------------------+------------------------+----------------------+

+-----------------------------------------------------------------------------------------+
| Processes:                                                                              |
|  GPU   GI   CI        PID   Type   Process name                              GPU Memory |
|        ID   ID                                                               Usage      |
|=========================================================================================|
|  No running processes found                                                             |
+-----------------------------------------------------------------------------------------+
"""
SMI_CUDA_12_9 = """\
Tue Nov 25 09:14:02 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 575.57.08              Driver Version: 575.57.08      CUDA Version: 12.9     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|                                         |                        |               MIG M. |
|=========================================+========================+======================|
|   0  NVIDIA A100-SXM4-80GB          On  |   00000000:07:00.0 Off |                    0 |
| N/A   31C    P0             61W /  400W |       0MiB /  81920MiB |      0%      Default |
|                                         |                        |             Disabled |
+-----------------------------------------+------------------------+----------------------+

+-----------------------------------------------------------------------------------------+
| Processes:                                                                              |
|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |
|        ID   ID                                                               Usage      |
|=========================================================================================|
|  No running processes found                                                             |
+-----------------------------------------------------------------------------------------+
"""
SMI_CUDA_13_0 = """\
Tue Nov 25 09:15:47 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: 13.0     |
+-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|                                         |                        |               MIG M. |
|=========================================+========================+======================|
|   0  NVIDIA H100 80GB HBM3          On  |   00000000:00:05.0 Off |                    0 |
| N/A   29C    P0             69W /  700W |       0MiB /  81559MiB |      0%      Default |
|                                         |                        |             Disabled |
+-----------------------------------------+------------------------+----------------------+

+-----------------------------------------------------------------------------------------+
| Processes:                                                                              |
|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |
|        ID   ID                                                               Usage      |
|=========================================================================================|
|  No running processes found                                                             |
+-----------------------------------------------------------------------------------------+
"""
SMI_NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n"
)
SMI_CUDA_11_8 = SMI_CUDA_12_4.replace("550.54.15", "520.61.05").replace("CUDA Version: 12.4", "CUDA Version: 11.8")
SMI_CUDA_13_2 = SMI_CUDA_13_0.replace("580.159.04", "595.45.04").replace("CUDA Version: 13.0", "CUDA Version: 13.2")

CU12, CU13 = REQUIREMENTS[12], REQUIREMENTS[13]
PYTHONS = ((3, 10), (3, 11), (3, 12))


@pytest.mark.parametrize(
    "output, version, expected",
    [
        (SMI_CUDA_12_4, (12, 4), CU12),
        (SMI_CUDA_12_9, (12, 9), CU12),
        (SMI_CUDA_13_0, (13, 0), CU13),  # whatever the Python: every pinned wheel is there for 3.10-3.12
        (SMI_CUDA_13_2, (13, 2), CU13),  # a newer CUDA 13 driver: the same wheels
        (SMI_CUDA_11_8, (11, 8), None),  # too old for these wheels: the CPU path
        (SMI_NO_DRIVER, None, None),
        (None, None, None),  # no nvidia-smi at all
    ],
    ids=["cuda12.4", "cuda12.9", "cuda13.0", "cuda13.2", "cuda11.8", "no-driver", "no-nvidia-smi"],
)
def test_the_driver_s_cuda_major_picks_the_requirements(output, version, expected):
    assert cuda_version(output) == version
    assert requirements_file(output) == expected


def test_choice_on_this_kind_of_machine():
    assert choose({}, smi=lambda: None)[0] is None
    assert choose({"YOLO_DEVICE": "auto"}, smi=lambda: SMI_CUDA_12_9)[0] == CU12
    assert choose({}, smi=lambda: SMI_CUDA_13_0)[0] == CU13

    def no_call():
        raise AssertionError("YOLO_DEVICE=cpu must not even look for a GPU")

    path, why = choose({"YOLO_DEVICE": "cpu"}, smi=no_call)
    assert path is None and "YOLO_DEVICE=cpu" in why
    path, why = choose({}, smi=lambda: SMI_CUDA_11_8)
    assert path is None and "CUDA 11.8" in why


def _fake_nvidia_smi(folder: Path, output: str | None) -> dict[str, str]:
    """PATH with only a stand-in nvidia-smi (or none) and this interpreter's folder."""
    folder.mkdir(parents=True, exist_ok=True)
    if output is not None:
        (folder / "captured.txt").write_text(output)
        script = folder / "nvidia-smi"
        script.write_text(f"#!/bin/sh\nexec {shutil.which('cat')} '{folder / 'captured.txt'}'\n")
        script.chmod(0o755)
    return {**os.environ, "PATH": str(folder)}  # not the machine's own nvidia-smi, if it has one


@pytest.mark.parametrize(
    "output, expected",
    [(SMI_CUDA_13_0, CU13), (SMI_CUDA_12_4, CU12), (None, None)],
    ids=["cuda13.0", "cuda12.4", "cpu"],
)
def test_the_command_reads_nvidia_smi(tmp_path, output, expected):
    env = _fake_nvidia_smi(tmp_path / "bin", output)
    env.pop("YOLO_DEVICE", None)
    done = subprocess.run(
        [sys.executable, "-m", "yolo_triton.gpu_extra"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    if expected is None:
        assert "nothing installed for the GPU" in done.stdout
    else:
        assert expected.name in done.stdout


def test_no_stamp_and_nothing_installed_without_a_gpu(tmp_path):
    """What `make install` runs on a machine without nvidia-smi (CI): one line, the stamp, no pip."""
    env = _fake_nvidia_smi(tmp_path / "bin", None)
    env.pop("YOLO_DEVICE", None)
    stamp = tmp_path / "stamp"
    done = subprocess.run(
        [sys.executable, "-m", "yolo_triton.gpu_extra", "--install", "--stamp", str(stamp)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.count("\n") == 1 and "Installing" not in done.stdout
    assert stamp.read_text().startswith("none cuda=none: ")
    # YOLO_DEVICE=cpu: nothing either, and no stamp, so that a later plain `make serve` installs it
    stamp.unlink()
    subprocess.run(
        [sys.executable, "-m", "yolo_triton.gpu_extra", "--install", "--stamp", str(stamp)],
        cwd=ROOT,
        env={**env, "YOLO_DEVICE": "cpu"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert not stamp.exists()


# a driver installed, or of another CUDA major, after the first `make install`: the stamp records the choice
# (the file and the driver's CUDA major), and a changed choice installs again. No NVIDIA driver exists on the
# machines these tests run on: each nvidia-smi here is a stand-in printing a real driver's output.


SMI = (None, SMI_CUDA_13_0, SMI_CUDA_13_2)


def test_a_driver_installed_later_is_installed_for(tmp_path, monkeypatch, capsys):
    installed = []
    monkeypatch.setattr(gpu_extra, "install", installed.append)  # what pip would install, not installing it
    monkeypatch.delenv("YOLO_DEVICE", raising=False)
    stamp = tmp_path / ".gpu-installed"

    paths = {output: _fake_nvidia_smi(tmp_path / str(i), output)["PATH"] for i, output in enumerate(SMI)}
    driver = lambda output: monkeypatch.setenv("PATH", paths[output])

    driver(None)  # the first `make install`: no driver yet
    gpu_extra.main(["--install", "--stamp", str(stamp)])
    assert stamp.read_text().startswith("none cuda=none: ") and installed == []
    assert gpu_extra.changed(stamp) is None
    capsys.readouterr()

    driver(SMI_CUDA_13_0)  # then a driver for CUDA 13
    why = gpu_extra.changed(stamp)
    assert why and "none cuda=none" in why and "requirements-gpu-cu13.txt cuda=13" in why
    gpu_extra.main(["--changed", str(stamp)])
    assert capsys.readouterr().out == f"GPU runtime: {why}\n"  # the one line `make` acts on
    gpu_extra.main(["--install", "--stamp", str(stamp)])
    assert installed == [CU13] and gpu_extra.recorded(stamp) == "requirements-gpu-cu13.txt cuda=13"
    assert "chosen again" in capsys.readouterr().out

    driver(SMI_CUDA_13_2)  # a newer driver of the same CUDA major: the same choice, nothing to do
    assert gpu_extra.changed(stamp) is None
    gpu_extra.main(["--changed", str(stamp)])
    assert capsys.readouterr().out == ""
    assert gpu_extra.changed(stamp, env={"YOLO_DEVICE": "cpu"}) is None  # which chooses nothing


@pytest.mark.parametrize(
    "before, now", [(SMI_CUDA_12_9, SMI_CUDA_13_0), (SMI_CUDA_13_0, SMI_CUDA_12_4), (SMI_CUDA_11_8, SMI_CUDA_12_4)]
)
def test_another_cuda_major_is_a_new_choice(tmp_path, before, now):
    stamp = tmp_path / ".gpu-installed"
    _, why, key = gpu_extra.decide({}, smi=lambda: before)
    stamp.write_text(f"{key}: {why}\n")
    assert gpu_extra.changed(stamp, env={}, smi=lambda: before) is None
    assert gpu_extra.changed(stamp, env={}, smi=lambda: now)


def test_a_stamp_of_the_older_layout_is_chosen_again(tmp_path):
    stamp = tmp_path / ".gpu-installed"
    stamp.write_text("none: no NVIDIA driver here (nvidia-smi not found or failing): nothing installed for the GPU\n")
    assert gpu_extra.recorded(stamp) is None
    assert gpu_extra.changed(stamp, env={}, smi=lambda: SMI_CUDA_12_9)
    assert gpu_extra.changed(tmp_path / "no-stamp", env={}, smi=lambda: SMI_CUDA_12_9) is None  # make installs


def _outside_make() -> dict[str, str]:
    """This environment without a calling make's variables (`make test` runs these tests): a nested
    make would print "Entering directory" lines and inherit -n's siblings from MAKEFLAGS."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}


def _make_dry_run(tmp_path, stamp_text: str, smi_output: str) -> str:
    """`make -n install` with .venv in tmp_path, up to date but for the GPU stamp's choice, and a
    stand-in nvidia-smi first on PATH."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f"#!/bin/sh\nexec '{sys.executable}' \"$@\"\n")
    python.chmod(0o755)
    (venv / ".installed").touch()
    (venv / ".gpu-installed").write_text(stamp_text)
    path = _fake_nvidia_smi(tmp_path / "bin", smi_output)["PATH"]
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", f"VENV={venv}", "install"],
        cwd=ROOT,
        env={**_outside_make(), "PATH": f"{path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_make_installs_again_for_a_driver_added(tmp_path):
    venv = tmp_path / "added" / "venv"
    command = f"{venv}/bin/python -m yolo_triton.gpu_extra --install --stamp {venv}/.gpu-installed"
    none = "none cuda=none: no NVIDIA driver here (nvidia-smi not found or failing): nothing installed for the GPU\n"
    assert _make_dry_run(tmp_path / "added", none, SMI_CUDA_13_0) == command + "\n"  # the GPU runtime alone
    cu13 = "requirements-gpu-cu13.txt cuda=13: NVIDIA driver for CUDA 13.0: the GPU runtime from ...\n"
    assert "gpu_extra" not in _make_dry_run(tmp_path / "same", cu13, SMI_CUDA_13_2)
    assert "gpu_extra" not in _make_dry_run(tmp_path / "still-none", none, SMI_NO_DRIVER)


# the requirements files


def _lines(path: Path) -> list[str]:
    return [
        line.strip() for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


@pytest.mark.parametrize("path", [CU12, CU13], ids=lambda p: p.name)
def test_every_line_is_an_exact_pin(path):
    for line in _lines(path):
        assert re.fullmatch(
            r'[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][0-9A-Za-z.]*( *; *python_version *[<>=]+ *"3\.\d+")?', line
        ), line


def _requirements_txt() -> dict[str, str]:
    return dict(line.split("==") for line in _lines(ROOT / "requirements.txt"))


@pytest.mark.parametrize("path, cuda", [(CU12, 12), (CU13, 13)], ids=["cu12", "cu13"])
def test_the_gpu_runtime_is_complete_for_each_python(path, cuda):
    suffix = f"-cu{cuda}"
    for python in PYTHONS:
        pinned = pins(path, python)
        assert pinned["numpy"] == _requirements_txt()["numpy"] == "1.26.4"  # the stub's NumPy 1
        assert pinned[f"cupy-cuda{cuda}x"].startswith("13.")  # CuPy 14 needs NumPy 2
        assert f"nvidia-nvimgcodec{suffix}" in pinned
        assert any(name.startswith("nvidia-nvjpeg") for name in pinned)
        assert any(name.startswith("nvidia-cuda-nvrtc") for name in pinned)  # CuPy's RawKernel
        for library in ("nvidia-cuda-runtime", "nvidia-cublas", "nvidia-cufft", "nvidia-curand"):
            assert any(name.startswith(library) for name in pinned), library
        assert "onnxruntime" not in pinned  # the CPU build: replaced on CUDA 12, left alone on CUDA 13
    cu12, cu13 = pins(CU12, (3, 11)), pins(CU13, (3, 11))
    # CUDA 12: ONNX Runtime GPU for CUDA 12 and its cuDNN 9 (pip's PyTorch is a CUDA 13 build)
    assert cu12["onnxruntime-gpu"].startswith("1.2") and cu12["nvidia-cudnn-cu12"].startswith("9.")
    assert not {"torch", "torchvision", "ultralytics"} & set(cu12)
    # CUDA 13: PyTorch as requirements.txt serves; no ONNX Runtime GPU, cuDNN is PyTorch's own
    for name in ("torch", "torchvision", "ultralytics"):
        assert cu13[name] == _requirements_txt()[name], name
    assert not any(name.startswith(("onnxruntime", "nvidia-cudnn")) for name in cu13)


def test_the_extras_are_the_requirements_files():
    """pyproject's [gpu-cu12] and [gpu-cu13] are the files' very requirements, markers included."""
    from conftest import pyproject
    from packaging.requirements import Requirement

    extras = pyproject()["optional-dependencies"]
    for cuda, path in REQUIREMENTS.items():
        extra = sorted(str(Requirement(r)) for r in extras[f"gpu-cu{cuda}"])
        assert extra == sorted(str(Requirement(line)) for line in _lines(path)), path.name
    assert "gpu" not in extras  # the unpinned extra of either CUDA major is gone


def test_cuda_13_keeps_the_cpu_onnxruntime():
    assert gpu_extra.wanted(CU13)["onnxruntime"] == _requirements_txt()["onnxruntime"]
    assert "onnxruntime-gpu" not in gpu_extra.wanted(CU13)
    assert "onnxruntime" not in gpu_extra.wanted(CU12) and "onnxruntime-gpu" in gpu_extra.wanted(CU12)


def test_cuda_12_pins_one_toolkit_release():
    """CuPy compiles with the CUDA runtime's headers only when they are NVRTC's major.minor."""
    pinned = pins(CU12, (3, 11))
    nvrtc, runtime = pinned["nvidia-cuda-nvrtc-cu12"], pinned["nvidia-cuda-runtime-cu12"]
    assert nvrtc.split(".")[:2] == runtime.split(".")[:2] == ["12", "9"]


def test_the_cpu_install_does_not_grow():
    gpu = {"cupy", "onnxruntime-gpu", "nvimgcodec", "nvjpeg", "cuda-nvrtc"}
    for name in _requirements_txt():
        assert not any(g in name for g in gpu), f"requirements.txt installs {name} on every machine"


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def test_the_cuda_13_libraries_are_pytorch_s_own():
    """requirements.txt's PyTorch installs CUDA 13 libraries: the CUDA 13 runtime pins the same, so
    installing it changes none of them; cuDNN for CUDA 12 is the same release as PyTorch's (the two
    share nvidia/cudnn/lib)."""
    if _installed_version("torch") is None:
        pytest.skip("PyTorch not installed here")
    checked = 0
    for name, version in pins(CU13, (3, 11)).items():
        if name in ("numpy", "cupy-cuda13x", "fastrlock", "nvidia-nvimgcodec-cu13", "nvidia-nvjpeg"):
            continue
        installed = _installed_version(name)
        if installed is not None:
            assert installed == version, f"{name}: PyTorch's is {installed}, requirements-gpu-cu13.txt pins {version}"
            checked += 1
    cudnn = _installed_version("nvidia-cudnn-cu13")
    if cudnn is not None:
        assert pins(CU12, (3, 11))["nvidia-cudnn-cu12"] == cudnn
    assert checked or cudnn is None


# the install's repair of libraries that another distribution overwrote (pip does not see it)


def _fake_distribution(site: Path, name: str, files: dict[str, bytes], record: dict[str, bytes]) -> None:
    for path, content in files.items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_bytes(content)
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    rows = []
    for path, content in record.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        rows.append(f"{path},sha256={digest},{len(content)}")
    (info / "RECORD").write_text("\n".join(rows + [f"{info.name}/RECORD,,"]) + "\n")


def test_damaged_finds_libraries_overwritten_or_removed(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    cu12, cu13 = b"cudnn for CUDA 12", b"cudnn for CUDA 13"
    _fake_distribution(
        site, "nvidia-cudnn-cu13", {"nvidia/cudnn/lib/libcudnn.so.9": cu13}, {"nvidia/cudnn/lib/libcudnn.so.9": cu13}
    )
    _fake_distribution(site, "nvidia-cudnn-cu12", {}, {"nvidia/cudnn/lib/libcudnn.so.9": cu12})
    _fake_distribution(site, "onnxruntime-gpu", {}, {"onnxruntime/capi/onnxruntime_pybind11_state.so": b"gpu"})
    _fake_distribution(site, "cupy-cuda12x", {"cupy/core.so": b"cupy"}, {"cupy/core.so": b"cupy"})
    monkeypatch.setattr(
        gpu_extra,
        "_installed",
        lambda: {
            gpu_extra._canonical(d.metadata["Name"]): d for d in importlib.metadata.distributions(path=[str(site)])
        },
    )
    # cuDNN 12 overwritten by 13 (same path), onnxruntime-gpu's module removed, CuPy intact
    assert gpu_extra.damaged(["nvidia-cudnn-cu12", "onnxruntime-gpu", "cupy-cuda12x", "not-installed"]) == [
        "nvidia-cudnn-cu12",
        "onnxruntime-gpu",
    ]
    assert gpu_extra.damaged(["nvidia-cudnn-cu13"]) == []
    (site / "nvidia/cudnn/lib/libcudnn.so.9").write_bytes(cu12)  # the CUDA 12 extra installed last
    assert gpu_extra.damaged(["nvidia-cudnn-cu12", "nvidia-cudnn-cu13"]) == ["nvidia-cudnn-cu13"]


ORT_MODULE = "onnxruntime/capi/onnxruntime_pybind11_state.so"
CUDNN = "nvidia/cudnn/lib/libcudnn.so.9"
# the wheels of the stand-in pip below: the files each would write
WHEELS = {
    "onnxruntime": {ORT_MODULE: b"onnxruntime, CPU"},
    "onnxruntime-gpu": {ORT_MODULE: b"onnxruntime, CUDA 12"},
    "nvidia-cudnn-cu12": {CUDNN: b"cudnn 9.24"},
    "nvidia-cudnn-cu13": {CUDNN: b"cudnn 9.24"},
    "cupy-cuda12x": {"cupy/_core/core.so": b"cupy for CUDA 12"},
}


def _install_here(tmp_path, monkeypatch, installed: list[str]) -> tuple[Path, list[tuple[str, ...]]]:
    """A site of these distributions (the last one's files on disk where two share a path), and pip
    replaced by a stand-in that removes and writes their files as pip would: what install() decides,
    without pip downloading gigabytes. Returns the site and the pip calls."""
    site = tmp_path / "site"
    site.mkdir()
    for name in installed:
        _fake_distribution(site, name, WHEELS[name], WHEELS[name])
    monkeypatch.setattr(
        gpu_extra,
        "_installed",
        lambda: {
            gpu_extra._canonical(d.metadata["Name"]): d for d in importlib.metadata.distributions(path=[str(site)])
        },
    )
    calls = []

    def pip(*args):
        calls.append(args)
        if args[0] == "uninstall":
            for name in args[3:]:
                for f in WHEELS[name]:
                    (site / f).unlink(missing_ok=True)
                shutil.rmtree(site / f"{name}-1.0.dist-info")
        elif "--force-reinstall" in args:
            for name in (a.split("==")[0] for a in args if "==" in a):
                for f, content in WHEELS[name].items():
                    (site / f).write_bytes(content)

    monkeypatch.setattr(gpu_extra, "_pip", pip)
    return site, calls


def test_cuda_13_leaves_the_cpu_onnxruntime_and_pytorch_s_cudnn(tmp_path, monkeypatch):
    """A .venv that had the CUDA 12 runtime (or an earlier CUDA 13 one with onnxruntime-gpu) beside
    requirements.txt's onnxruntime and PyTorch's cuDNN: the CUDA 13 install takes out onnxruntime-gpu
    and the CUDA 12 packages, whose uninstall removes the shared files, and puts those files back."""
    site, calls = _install_here(
        tmp_path,
        monkeypatch,
        ["onnxruntime", "nvidia-cudnn-cu13", "cupy-cuda12x", "nvidia-cudnn-cu12", "onnxruntime-gpu"],
    )
    gpu_extra.install(CU13)
    uninstall, install, reinstall = calls
    assert uninstall[3:] == ("cupy-cuda12x", "nvidia-cudnn-cu12", "onnxruntime-gpu")  # not onnxruntime
    assert install[:5] == ("install", "--quiet", "--no-warn-conflicts", "-r", str(CU13))
    assert install[5:] == (f"onnxruntime=={_requirements_txt()['onnxruntime']}",)  # back, if a CUDA 12 one took it
    assert sorted(reinstall[4:]) == ["nvidia-cudnn-cu13==1.0", f"onnxruntime=={_requirements_txt()['onnxruntime']}"]
    assert (site / ORT_MODULE).read_bytes() == b"onnxruntime, CPU" and (site / CUDNN).exists()


def test_cuda_12_replaces_the_cpu_onnxruntime(tmp_path, monkeypatch):
    site, calls = _install_here(tmp_path, monkeypatch, ["nvidia-cudnn-cu13", "onnxruntime"])
    gpu_extra.install(CU12)
    uninstall, install = calls  # nothing shares a file with onnxruntime once it is gone: no repair
    assert uninstall == ("uninstall", "--quiet", "--yes", "onnxruntime")
    assert install == ("install", "--quiet", "--no-warn-conflicts", "-r", str(CU12))
    assert not (site / ORT_MODULE).exists()  # the stand-in pip installs nothing: onnxruntime-gpu's would be there


# the wiring


def test_make_install_runs_it_once():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^install: \$\(INSTALLED\) \$\(GPU_INSTALLED\)$", makefile, re.MULTILINE)
    assert re.search(r"^GPU_INSTALLED := \$\(VENV\)/\.gpu-installed$", makefile, re.MULTILINE)
    rule = re.search(r"^\$\(GPU_INSTALLED\): (.*)\n\t(.*)$", makefile, re.MULTILINE)
    assert rule, "no rule for the GPU stamp"
    prerequisites = rule[1].split()
    assert prerequisites[0] == "$(INSTALLED)"  # after requirements.txt, and again whenever it is reinstalled
    assert {CU12.name, CU13.name, "yolo_triton/gpu_extra.py"} <= set(prerequisites)
    assert rule[2] == "$(PY) -m yolo_triton.gpu_extra --install --stamp $@"
    for target in ("serve", "test", "repository"):
        assert re.search(rf"^{target}: install$", makefile, re.MULTILINE), target


def test_make_dry_run_installs_the_gpu_runtime_after_a_change(tmp_path):
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", "-W", CU13.name, "install"],
        cwd=ROOT,
        env=_outside_make(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert ".venv/bin/python -m yolo_triton.gpu_extra --install --stamp .venv/.gpu-installed" in done.stdout


def test_the_stub_finds_the_pip_cuda_libraries(tmp_path, monkeypatch):
    platlib = tmp_path / "site-packages"
    for folder in (
        "nvidia/cu13/lib",
        "nvidia/curand/lib",
        "nvidia/cudnn/lib",
        "nvidia/cuda_nvrtc/lib",
        "nvidia/nvimgcodec",
    ):
        (platlib / folder).mkdir(parents=True)
    real = tritonserver.sysconfig.get_paths

    def paths(*args, **kwargs):
        return {**real(*args, **kwargs), "platlib": str(platlib)}

    monkeypatch.setattr(tritonserver.sysconfig, "get_paths", paths)
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/somewhere/lib")
    folders = tritonserver.server_environment()["LD_LIBRARY_PATH"].split(os.pathsep)
    nvidia = [f for f in folders if f.startswith(str(platlib))]
    # CUDA 12's per-library folders first (libcurand.so.10 is in both layouts), CUDA 13's last
    assert nvidia == [str(platlib / "nvidia" / n / "lib") for n in ("cuda_nvrtc", "cudnn", "curand", "cu13")]
    assert folders[0].endswith("nvidia_pytriton.libs") and folders[-1] == "/opt/somewhere/lib"


def test_no_cuda_folders_on_a_bare_environment(tmp_path, monkeypatch):
    real = tritonserver.sysconfig.get_paths
    monkeypatch.setattr(
        tritonserver.sysconfig, "get_paths", lambda *a, **k: {**real(*a, **k), "platlib": str(tmp_path)}
    )
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    assert "nvidia" not in tritonserver.server_environment()["LD_LIBRARY_PATH"].replace("nvidia_pytriton", "")
