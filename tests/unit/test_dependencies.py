"""pyproject.toml's dependencies are complete: each part of the package imports with only the
distributions its extra installs (and what they require), every other top-level import blocked.
`pip install .` is the client; drawing, the gateway, evaluation, export and the Triton
side each come with their extra."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import resolve_extras
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
# distribution of each module (ONNX Runtime's CPU and GPU builds are both `onnxruntime`). pip's resolution
# of all the lines together is tests/fixtures/resolved_extras.json, written online by resolve_extras.py
# beside it; each line's set is that resolution's closure of its requirements, checked here offline by
# .venv's pip in an environment of exactly those distributions' metadata.
RESOLVED = json.loads(resolve_extras.OUTPUT.read_text())
ONE_MODULE = (
    {"onnxruntime", "onnxruntime-gpu"},
    {"cupy-cuda12x", "cupy-cuda13x"},
    {"nvidia-nvimgcodec-cu12", "nvidia-nvimgcodec-cu13"},
)


def _closure(requirements: list[str]) -> dict[str, str]:
    """{name: version} of the resolved distributions these requirements install, transitively (markers
    evaluated for the Python and platform the resolution was made for)."""
    metadata = RESOLVED["metadata"]
    versions, todo = {}, [(Requirement(r), "") for r in requirements]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate(
            {**RESOLVED["environment"], "extra": extra}
        ):
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


def test_the_resolution_is_of_these_requirements():
    """pyproject.toml or install.md changed since the resolution was written: run the script again."""
    again = f"run `.venv/bin/python {RESOLVED['command']}` (online) and commit its output"
    assert RESOLVED["requirements"] == resolve_extras.all_requirements(), again


def test_the_documented_combinations():
    documented = resolve_extras.documented()
    assert documented[:3] == [(), ("draw", "gateway"), ("embedded", "export", "cpu")]
    assert {("server", "cpu"), ("server", "gpu-cu13"), ("server", "gpu-cu12")} <= set(documented)


@pytest.mark.parametrize("extras", resolve_extras.documented(), ids=lambda e: "+".join(e) or "client")
def test_each_documented_install_is_consistent(tmp_path, extras):
    recorded = RESOLVED["environment"]
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if (recorded["python_version"], recorded["sys_platform"]) != (here, sys.platform):
        pytest.skip(f"resolved for Python {recorded['python_version']} on {recorded['sys_platform']}")
    versions = _closure(resolve_extras.expanded(extras))
    for module in ONE_MODULE:
        assert len(module & set(versions)) <= 1, f"{extras}: {sorted(module & set(versions))} hold one module"
    project = pyproject()["optional-dependencies"]
    for extra in {"gpu-cu12", "gpu-cu13"} & set(extras):  # the exact pins, nothing moved by another extra
        for requirement in map(Requirement, project[extra]):
            if requirement.marker is None or requirement.marker.evaluate(RESOLVED["environment"]):
                assert versions[canonicalize_name(requirement.name)] in requirement.specifier, requirement
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    for name, version in versions.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(_metadata_file(RESOLVED["metadata"][name]))
    check = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0 and "No broken requirements found." in check.stdout, check.stdout + check.stderr
