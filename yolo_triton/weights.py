"""Which models to serve and their weights, from the environment (`make serve`, the repository
command): a models file (YOLO_MODELS_FILE), or the built-in table with YOLO_WEIGHTS,
YOLO_WEIGHTS_DIR and YOLO_MODELS; offline without any, the test data's weights (YOLO_TEST_DATA)."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path

from yolo_triton import contract
from yolo_triton.contract import BUILTIN_SOURCE, VARIANTS, Variant
from yolo_triton.models_file import ModelsFileError, load_models_file

ROOT = Path(__file__).resolve().parent.parent

TEST_DATA = ROOT.parent / "shared" / "data"  # the tests' data when YOLO_TEST_DATA names no other folder
WEIGHTS_HOST = ("github.com", 443)  # where Ultralytics downloads its release assets from


class WeightsError(Exception):
    """The environment names weights or variants that cannot be served (a file or folder that is not
    there, an unknown variant), or names nothing and nothing can be found: one line saying what to
    set, which `make serve` and the repository command print and exit with status 2."""


def network_available(timeout: float = 2.0) -> bool:
    """Whether Ultralytics could download weights now (a TCP connection to its assets' host)."""
    try:
        socket.create_connection(WEIGHTS_HOST, timeout=timeout).close()
        return True
    except OSError:
        return False


def test_data_folder(env: dict[str, str] | None = None) -> Path:
    """Where the tests' weights and images lie (the tests, `make test-data`, `make serve` offline)."""
    env = os.environ if env is None else env
    return Path(env.get("YOLO_TEST_DATA", TEST_DATA))


def resolve_weights(env: dict[str, str] | None = None, online=None) -> dict[str, str]:
    """Variant name -> weights to export, from the environment:

    YOLO_MODELS       comma-separated variants to serve (default: the one YOLO_WEIGHTS names,
                      else every variant found in YOLO_WEIGHTS_DIR, else the default YOLO11 n/s/m)
    YOLO_WEIGHTS      one .pt file; it serves the variant whose weights have its file name
                      (yolo11n.pt -> yolov11_nano), or the single variant named in YOLO_MODELS
    YOLO_WEIGHTS_DIR  a folder of .pt files named as in the variant table; without YOLO_MODELS it
                      serves every (not *_eval) variant whose file is there, saying which in one line
    otherwise         the bare file name, which Ultralytics downloads; with no network, the test
                      weights of YOLO_TEST_DATA (default ../shared/data) if it holds them (saying
                      so in one line), else WeightsError naming what to set
    Every mistake is a WeightsError of one line.
    """
    env = os.environ if env is None else env
    names = [n.strip() for n in env.get("YOLO_MODELS", "").split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise WeightsError(
            f"YOLO_MODELS: unknown variant(s) {', '.join(unknown)}; the built-in ones are {', '.join(VARIANTS)}"
        )
    if env.get("YOLO_WEIGHTS"):
        path = env["YOLO_WEIGHTS"]
        if not Path(path).is_file():
            raise WeightsError(f"YOLO_WEIGHTS={path} is not a file")
        if not names:
            match = contract.variant_for_weights(path)
            if match is None:
                raise WeightsError(
                    f"YOLO_WEIGHTS={path}: no built-in variant uses weights named {Path(path).name}; "
                    "name one with YOLO_MODELS=<variant>, or serve it from a models file (YOLO_MODELS_FILE)"
                )
            names = [match.name]
        if len(names) != 1:
            raise WeightsError("YOLO_WEIGHTS gives one file: name at most one variant in YOLO_MODELS")
        return {names[0]: path}
    if env.get("YOLO_WEIGHTS_DIR"):
        return _weights_in_folder(Path(env["YOLO_WEIGHTS_DIR"]), names)
    chosen = names or list(contract.DEFAULT_VARIANTS)
    if (online or network_available)():
        return {n: VARIANTS[n].weights for n in chosen}
    test_weights = test_data_folder(env) / "weights"
    if all((test_weights / VARIANTS[n].weights).is_file() for n in chosen):
        print(
            f"No network to download weights: serving the test weights from {test_weights}; "
            "set YOLO_WEIGHTS or YOLO_WEIGHTS_DIR for yours.",
            flush=True,
        )
        return {n: str(test_weights / VARIANTS[n].weights) for n in chosen}
    raise WeightsError(
        f"No weights for {', '.join(chosen)}: no network to download them and none in {test_weights}. "
        "Set YOLO_WEIGHTS=/path/to/weights.pt (with YOLO_MODELS=<variant> for another file name) "
        "or YOLO_WEIGHTS_DIR=/folder/of/weights."
    )


def _weights_in_folder(folder: Path, names: list[str]) -> dict[str, str]:
    """YOLO_WEIGHTS_DIR: the variants named (each file must be there), else every serving variant
    whose file is there, said in one line."""
    if not folder.is_dir():
        raise WeightsError(f"YOLO_WEIGHTS_DIR={folder} is not a folder")
    if names:
        missing = [f"{VARIANTS[n].weights} ({n})" for n in names if not (folder / VARIANTS[n].weights).is_file()]
        if missing:
            raise WeightsError(f"YOLO_WEIGHTS_DIR={folder} has no {', '.join(missing)}")
        return {n: str(folder / VARIANTS[n].weights) for n in names}
    found = {
        n: str(folder / v.weights) for n, v in VARIANTS.items() if not v.multi_label and (folder / v.weights).is_file()
    }
    if not found:
        files = sorted({v.weights for v in VARIANTS.values()})
        raise WeightsError(
            f"YOLO_WEIGHTS_DIR={folder} holds none of the built-in variants' weights ({', '.join(files)}); "
            "weights of other names are served from a models file (YOLO_MODELS_FILE)"
        )
    print(
        f"YOLO_WEIGHTS_DIR={folder}: serving {', '.join(found)}, the built-in variants whose weights are there.",
        flush=True,
    )
    return found


def resolve_models(env: dict[str, str] | None = None, online=None) -> dict[str, Variant]:
    """Name -> Variant to serve: YOLO_MODELS_FILE's models (models_file.py), else the built-in table's
    with the weights of resolve_weights."""
    env = os.environ if env is None else env
    if env.get("YOLO_MODELS_FILE"):
        others = [k for k in ("YOLO_MODELS", "YOLO_WEIGHTS", "YOLO_WEIGHTS_DIR") if env.get(k)]
        if others:
            raise ModelsFileError(f"YOLO_MODELS_FILE names the models and their weights: unset {', '.join(others)}")
        return load_models_file(env["YOLO_MODELS_FILE"])
    return {n: replace(VARIANTS[n], weights=w) for n, w in resolve_weights(env, online).items()}


def models_source(env: dict[str, str] | None = None) -> str:
    """What errors about the served models name: the models file, or the built-in table."""
    env = os.environ if env is None else env
    return env.get("YOLO_MODELS_FILE") or BUILTIN_SOURCE
