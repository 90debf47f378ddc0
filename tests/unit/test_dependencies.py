"""pyproject.toml's dependencies are complete: each part of the package imports with only the
distributions its extra installs (and what they require), every other top-level import blocked.
`pip install yolo-triton` is the client; drawing, the gateway, evaluation, export and the Triton
side each come with their extra."""

from __future__ import annotations

import subprocess

import pytest
from conftest import pyproject
from only_distributions import command

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
