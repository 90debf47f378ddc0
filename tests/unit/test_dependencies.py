"""pyproject.toml's dependencies are complete: each part of the package imports with only the
distributions its extra installs (and what they require), every other top-level import blocked.
`pip install yolo-triton` is the client; drawing, the gateway, evaluation, export and the Triton
side each come with their extra."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import pyproject
from only_distributions import command
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from yolo_triton.weights import ROOT

# What each extra must make importable (at import time; the GPU extra is checked by gpu_extra's tests)
PARTS = {
    (): ["yolo_triton.client", "yolo_triton.client.cli", "yolo_triton.contract", "yolo_triton.boxes"],
    ("draw",): ["yolo_triton.client.annotate"],
    ("gateway",): ["yolo_triton.client.gateway"],
    ("eval",): ["yolo_triton.client.evaluate"],
    ("export",): ["yolo_triton.export.create_onnx", "yolo_triton.models_file"],
    ("server",): [
        "yolo_triton.preprocessing",
        "yolo_triton.repository",
        "yolo_triton.serve",
        "yolo_triton.canary",
        "yolo_triton.tritonserver",
    ],
}


def _requirements(extras: tuple[str, ...]) -> list[str]:
    project = pyproject()
    return [*project["dependencies"], *(r for e in extras for r in project["optional-dependencies"][e])]


@pytest.mark.parametrize("extras", PARTS, ids=lambda e: "+".join(e) or "client")
def test_each_part_imports_with_its_extra_only(extras):
    run = subprocess.run(
        command(_requirements(extras), "import", *PARTS[extras]),
        cwd=ROOT / "tests",  # not the checkout's root: benchmarks/ and the like are not on the path
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]


def test_the_client_does_not_import_the_server_side():
    """The blocker is real: without the server extra, preprocessing (OpenCV, Pillow) is refused."""
    run = subprocess.run(
        command(_requirements(()), "import", "yolo_triton.preprocessing"),
        cwd=ROOT / "tests",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode != 0 and "is not installed by these requirements" in run.stderr


# Every `pip install` line of docs/install.md: what pip installs for it passes `pip check` and holds one
# distribution of each module (ONNX Runtime's CPU and GPU builds are both `onnxruntime`). pip resolves all the
# lines' extras together once, reading each wheel's metadata only (not the gigabytes of PyTorch and the CUDA
# libraries); each line's set is that resolution's closure of its requirements, checked by pip in an
# environment of exactly those distributions' metadata. The resolving pip is a newer one, put in a temporary
# folder: .venv's (23.2, Python 3.11's own) downloads every whole wheel to read its dependencies where the
# index gives no metadata files, about 3 GB here; pip 26.2's fast-deps reads a wheel's METADATA alone by
# HTTP range requests.
INSTALL_MD = ROOT / "docs" / "install.md"
RESOLVING_PIP = "pip==26.2.1"
ONE_MODULE = (
    {"onnxruntime", "onnxruntime-gpu"},
    {"cupy-cuda12x", "cupy-cuda13x"},
    {"nvidia-nvimgcodec-cu12", "nvidia-nvimgcodec-cu13"},
)


def _documented() -> list[tuple[str, ...]]:
    """The extras of each `pip install` command line of install.md (() for the client alone)."""
    lines = re.findall(r'^pip install "?(?:yolo-triton|\.)(?:\[([\w,-]+)\])?"?(?:\s|$)', INSTALL_MD.read_text(), re.M)
    return [tuple(extras.split(",")) if extras else () for extras in lines]


def _expanded(extras) -> list[str]:
    """What pip installs for yolo-triton[extras], this project itself aside: its dependencies and each
    extra's, an extra of its own (embedded's yolo-triton[server]) expanded in turn."""
    project = pyproject()
    result, todo = list(project["dependencies"]), list(extras)
    while todo:
        for requirement in project["optional-dependencies"][todo.pop()]:
            if (own := re.fullmatch(r"yolo-triton\[([\w,-]+)\]", requirement)) is not None:
                todo += own[1].split(",")
            else:
                result.append(requirement)
    return result


def _closure(requirements: list[str], metadata: dict[str, dict]) -> dict[str, str]:
    """{name: version} of the resolved distributions these requirements install, transitively."""
    versions, todo = {}, [(Requirement(r), "") for r in requirements]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        assert metadata[name]["version"] in requirement.specifier, f"{requirement}: resolved {metadata[name]}"
        new = name not in versions
        versions[name] = metadata[name]["version"]
        for wanted in ["", *requirement.extras] if new else requirement.extras:
            todo += [(Requirement(r), wanted) for r in metadata[name].get("requires_dist", [])]
    return versions


def _metadata_file(metadata: dict) -> str:
    """METADATA of a distribution from the JSON form of pip's installation report."""
    lines = [f"Metadata-Version: {metadata['metadata_version']}", f"Name: {metadata['name']}"]
    lines.append(f"Version: {metadata['version']}")
    lines += [f"Requires-Dist: {r}" for r in metadata.get("requires_dist", [])]
    lines += [f"Provides-Extra: {e}" for e in metadata.get("provides_extra", [])]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict[tuple[str, ...], tuple[dict[str, str], subprocess.CompletedProcess]]:
    """{extras: ({name: version} of what the line installs, `pip check` over an environment of exactly
    those)} for every documented line (this Python and platform, wheels only)."""
    folder = tmp_path_factory.mktemp("resolved")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(folder / "pip"), RESOLVING_PIP],
        check=True,
        timeout=300,
    )
    pip = [sys.executable, str(folder / "pip" / "pip")]
    union = sorted({extra for extras in _documented() for extra in extras})
    report = folder / "report.json"
    command = [*pip, "install", "--dry-run", "--ignore-installed", "--quiet", "--use-feature=fast-deps"]
    run = subprocess.run(
        [*command, "--only-binary=:all:", "--report", str(report), *_expanded(union)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"pip cannot install yolo-triton[{','.join(union)}]: {run.stderr[-3000:]}"
    metadata = {
        canonicalize_name(i["metadata"]["name"]): i["metadata"] for i in json.loads(report.read_text())["install"]
    }
    result = {}
    for i, extras in enumerate(_documented()):
        versions = _closure(_expanded(extras), metadata)
        venv = folder / f"venv{i}"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        (site,) = venv.glob("lib/python*/site-packages")
        for name in versions:
            info = site / f"{name.replace('-', '_')}-{versions[name]}.dist-info"
            info.mkdir()
            (info / "METADATA").write_text(_metadata_file(metadata[name]))
        check = [*pip, "--python", str(venv / "bin" / "python"), "check"]
        result[extras] = versions, subprocess.run(check, capture_output=True, text=True, timeout=120)
    return result


def test_the_documented_combinations():
    documented = _documented()
    assert documented[:3] == [(), ("draw", "gateway"), ("embedded", "export", "cpu")]
    assert {("server", "cpu"), ("server", "gpu-cu13"), ("server", "gpu-cu12")} <= set(documented)


@pytest.mark.parametrize("extras", _documented(), ids=lambda e: "+".join(e) or "client")
def test_each_documented_install_is_consistent(resolved, extras):
    versions, check = resolved[extras]
    assert check.returncode == 0 and "No broken requirements found." in check.stdout, check.stdout + check.stderr
    for module in ONE_MODULE:
        assert len(module & set(versions)) <= 1, f"{extras}: {sorted(module & set(versions))} hold one module"
    project = pyproject()["optional-dependencies"]
    for extra in {"gpu-cu12", "gpu-cu13"} & set(extras):  # the exact pins, nothing moved by another extra
        for requirement in map(Requirement, project[extra]):
            if requirement.marker is None or requirement.marker.evaluate():
                assert versions[canonicalize_name(requirement.name)] in requirement.specifier, requirement
