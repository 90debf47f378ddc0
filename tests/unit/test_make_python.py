"""Which Python `make` makes .venv with: the first of python3, python3.12, python3.11, python3.10
that requires-python takes, or one line naming the problem; a PYTHON of another version than
.venv's makes it anew. Run against fake interpreters on PATH (each answers the version question
and fails `-m venv` loudly, so nothing is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from conftest import pyproject
from packaging.specifiers import SpecifierSet

from yolo_triton.weights import ROOT

CANDIDATES = ("python3", "python3.12", "python3.11", "python3.10")
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="no make here")


def fake_python(path, version: str | None, venv_module: bool = True) -> None:
    """An interpreter of this version (None: not installed) at path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if version is None:
        path.write_text("#!/bin/sh\nexit 127\n")
    else:
        path.write_text(
            "#!/bin/sh\n"
            'if [ "$1" = -c ]; then case "$2" in\n'
            f"  *version_info*) echo {version};;\n"
            f"  *ensurepip*) exit {0 if venv_module else 1};;\n"
            "esac; exit 0; fi\n"
            f'echo "{path.name} $*" >&2; exit 3\n'
        )
    path.chmod(0o755)


def make_install(tmp_path, versions: dict[str, str | None], *args: str, venv_module: bool = True):
    """`make install` with these interpreters on PATH (the others missing) and .venv in tmp_path."""
    bin_dir = tmp_path / "bin"
    for name in CANDIDATES:
        fake_python(bin_dir / name, versions.get(name), venv_module)
    return subprocess.run(
        [MAKE, "-C", str(ROOT), f"VENV={tmp_path / 'venv'}", *args, "install"],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_supported_versions_are_requires_python():
    makefile = (ROOT / "Makefile").read_text()
    supported = re.search(r"^SUPPORTED_PYTHON := (.+)$", makefile, re.M).group(1).split()
    requires = SpecifierSet(pyproject()["requires-python"])
    assert [f"3.{minor}" for minor in range(8, 16) if f"3.{minor}.0" in requires] == supported


def test_python3_of_3_13_falls_back_to_a_supported_one(tmp_path):
    run = make_install(tmp_path, {"python3": "3.13", "python3.11": "3.11"})
    assert f"python3.11 -m venv {tmp_path / 'venv'}" in run.stderr, run.stdout + run.stderr


def test_no_supported_python_is_one_line(tmp_path):
    run = make_install(tmp_path, {"python3": "3.13"})
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert re.fullmatch(
        r"Makefile:\d+: \*\*\* no Python 3\.10-3\.12 found \(python3 is 3\.13\): install one, then run "
        r"make PYTHON=python3\.12 \(or python3\.11, python3\.10\)\.  Stop\.",
        line,
    )


def test_an_unsupported_or_missing_python_given_is_one_line(tmp_path):
    for given, why in (("python3", "is Python 3.13"), ("python3.12", "is not found")):
        run = make_install(tmp_path, {"python3": "3.13", "python3.11": "3.11"}, f"PYTHON={given}")
        assert run.returncode == 2
        (line,) = run.stderr.strip().splitlines()
        assert f"PYTHON={given} {why}; yolo-triton needs Python 3.10-3.12" in line


def test_a_python_without_its_venv_module_is_one_line(tmp_path):
    run = make_install(tmp_path, {"python3": "3.12"}, venv_module=False)
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert "python3 cannot make a virtualenv" in line and "apt install python3-venv" in line


def test_a_python_of_another_version_makes_venv_anew(tmp_path):
    venv = tmp_path / "venv"
    fake_python(venv / "bin" / "python", "3.11")
    (venv / ".installed").touch()
    (venv / ".gpu-installed").touch()
    # without PYTHON, a .venv of a supported Python stays, whatever python3 is
    assert make_install(tmp_path, {"python3": "3.12"}, "--question").returncode == 0
    run = make_install(tmp_path, {"python3": "3.11", "python3.12": "3.12"}, "PYTHON=python3.12")
    assert f"{venv} is Python 3.11: making it anew with python3.12" in run.stdout, run.stdout + run.stderr
    assert f"python3.12 -m venv {venv}" in run.stderr and not venv.exists()


def test_a_venv_of_an_unsupported_python_is_made_anew(tmp_path):
    """.venv made by a 3.13 `python3` before make checked: a plain `make install` replaces it."""
    venv = tmp_path / "venv"
    fake_python(venv / "bin" / "python", "3.13")
    run = make_install(tmp_path, {"python3": "3.13", "python3.10": "3.10"})
    assert f"{venv} is Python 3.13: making it anew with python3.10" in run.stdout, run.stdout + run.stderr
