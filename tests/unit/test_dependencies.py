"""pyproject.toml's dependencies are complete: each part of the package imports with only the
distributions its extra installs (and what they require), every other top-level import blocked.
`pip install yolo-triton` is the client; drawing, the gateway, evaluation, export and the Triton
side each come with their extra."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import pyproject

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

# Run in a fresh interpreter: a finder that refuses the top-level modules of every installed
# distribution but the allowed ones and what they require (markers evaluated with the extras
# asked for), as if only those were installed.
_BLOCKER = r"""
import importlib, importlib.metadata as md, json, sys
from packaging.requirements import Requirement

requirements, modules = json.loads(sys.argv[1]), json.loads(sys.argv[2])
allowed, todo = set(), [(r, "") for r in requirements]
while todo:
    text, extra = todo.pop()
    req = Requirement(text)
    if req.marker and not req.marker.evaluate({"extra": extra}):
        continue
    name = req.name.lower().replace("_", "-")
    if name in allowed and not req.extras:
        continue
    allowed.add(name)
    for sub in md.requires(req.name) or []:
        todo += [(sub, e) for e in (req.extras or {""})] + ([(sub, "")] if req.extras else [])
blocked = {top for top, dists in md.packages_distributions().items()
           if not any(d.lower().replace("_", "-") in allowed for d in dists)}
blocked -= {"yolo_triton", "_distutils_hack", "packaging"} | set(sys.modules)

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"{name} is not installed by these requirements", name=name)
        return None

sys.meta_path.insert(0, Blocker())
for module in modules:
    importlib.import_module(module)
"""


def _requirements(extras: tuple[str, ...]) -> list[str]:
    project = pyproject()
    return [*project["dependencies"], *(r for e in extras for r in project["optional-dependencies"][e])]


@pytest.mark.parametrize("extras", PARTS, ids=lambda e: "+".join(e) or "client")
def test_each_part_imports_with_its_extra_only(extras):
    run = subprocess.run(
        [sys.executable, "-c", _BLOCKER, json.dumps(_requirements(extras)), json.dumps(PARTS[extras])],
        cwd=ROOT / "tests",  # not the checkout's root: benchmarks/ and the like are not on the path
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]


def test_the_client_does_not_import_the_server_side():
    """The blocker is real: without the server extra, preprocessing (OpenCV, Pillow) is refused."""
    run = subprocess.run(
        [sys.executable, "-c", _BLOCKER, json.dumps(_requirements(())), json.dumps(["yolo_triton.preprocessing"])],
        cwd=ROOT / "tests",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode != 0 and "is not installed by these requirements" in run.stderr
