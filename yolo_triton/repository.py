"""Build the Triton model repository from the contract, the variant table and the target table.

For each chosen variant it writes three models, configs from yolo_triton.model_config:

    preprocess              Python: encoded bytes -> letterboxed UINT8 + letterbox params (shared);
                            on the GPU (nvImageCodec + CuPy) for the GPU targets, else OpenCV
    <variant>_detector      the graph of yolo_triton/export/create_onnx.py (NMS and box mapping inside), run by
                            the target (yolo_triton.targets)
    <variant>               ensemble: image -> preprocess -> detector -> num_dets, det_boxes, ...

(pytorch-gpu: no preprocess model; its detector takes the encoded images and the
ensemble is image -> detector.)

The folder holds all it needs and nothing that points back here: a stock Triton of the pinned
release serves it where its Python has this package installed (model_repository/README.md).

    python -m yolo_triton.repository [--out model_repository] [--target auto|onnxruntime-gpu|...]
    (models and weights: see yolo_triton.weights; target "auto": see auto_target, YOLO_DEVICE=auto|gpu|cpu;
     YOLO_PRECISION=fp16|fp32 overrides the target's precision of the network)
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from yolo_triton import contract
from yolo_triton.contract import BUILTIN_SOURCE, VARIANTS, Variant
from yolo_triton.model_config import detector_config, ensemble_config, preprocess_config
from yolo_triton.models_file import ModelsFileError, inspect_weights
from yolo_triton.targets import TARGETS, Target
from yolo_triton.weights import ROOT, WeightsError, models_source, resolve_models

DEFAULT_OUT = ROOT / "model_repository"
MODEL_SOURCES = Path(__file__).resolve().parent / "triton_models"
DEVICES = ("auto", "gpu", "cpu")


class SettingError(ValueError):
    """A YOLO_DEVICE or YOLO_PRECISION this machine cannot serve: one line naming the variable."""


def _pytorch_gpu_available() -> bool:
    """PyTorch (with torchvision) here can use the GPU: its CUDA build runs on this driver."""
    try:
        import torch
        import torchvision  # noqa: F401

        return torch.cuda.is_available()
    except Exception:
        return False


def _onnxruntime_gpu_available() -> bool:
    try:
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except Exception:
        return False


def gpu_target() -> str | None:
    """The GPU target this machine can serve, fastest first (benchmarks/RESULTS.md): pytorch-gpu where
    pip's PyTorch runs on the driver, else onnxruntime-gpu (a CUDA 12 driver); None without a GPU runtime."""
    from yolo_triton.batch_preprocessing import gpu_available

    if not gpu_available():
        return None
    if _pytorch_gpu_available():
        return "pytorch-gpu"
    return "onnxruntime-gpu" if _onnxruntime_gpu_available() else None


def auto_target(device: str = "auto") -> str:
    """YOLO_DEVICE: "gpu" or "cpu" force a side; "auto" serves on the GPU when its runtime is here."""
    if device not in DEVICES:
        raise SettingError(f"YOLO_DEVICE must be one of {', '.join(DEVICES)}, not {device!r}")
    on_gpu = gpu_target() if device != "cpu" else None
    if device == "gpu" and on_gpu is None:
        raise SettingError(
            "YOLO_DEVICE=gpu, but CuPy, nvImageCodec, a GPU build of PyTorch or ONNX Runtime, or a CUDA GPU"
            " is missing here"
        )
    return on_gpu or "onnxruntime-cpu"


def _export_key(v: Variant, target: Target, precision: str) -> str:
    """Changes whenever the weights, the variant row, what the target builds, the precision, the
    export toolchain's versions or the code that shapes the artifact change (the modules' own files,
    wherever the package is installed); an engine's also with the GPU model and the TensorRT version."""
    from yolo_triton import models_file
    from yolo_triton.export import build_engine, create_onnx

    h = hashlib.sha256(repr((v, target.nms, target.artifact, target.engine, precision, _toolchain())).encode())
    for f in (Path(v.weights), *(Path(m.__file__) for m in (create_onnx, build_engine, contract, models_file))):
        h.update(f.read_bytes() if f.is_file() else b"missing")
    if not target.engine:
        return h.hexdigest()
    return f"{h.hexdigest()} {_gpu_name()} TensorRT {build_engine.tensorrt_version()}"


# The distributions whose code writes the graph: Ultralytics' export (with PyTorch), the graph
# surgery and slimming, and the FP16 conversion (onnxruntime.transformers, either ONNX Runtime).
EXPORT_TOOLCHAIN = ("ultralytics", "torch", "onnx", "onnxslim", "onnx-graphsurgeon", "onnxruntime", "onnxruntime-gpu")


def _toolchain() -> tuple[tuple[str, str], ...]:
    def installed(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "absent"

    return tuple((name, installed(name)) for name in EXPORT_TOOLCHAIN)


def _gpu_name() -> str:
    return subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", "0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def write_repository(
    out: Path,
    models: dict[str, Variant | str],
    target: str = "onnxruntime-cpu",
    precision: str | None = None,
    source: str = BUILTIN_SOURCE,
) -> Path:
    """Write the repository for `models` (name -> Variant, or -> weights of the built-in variant of
    that name). Every model's weights are inspected first (models_file.inspect_weights: a
    ModelsFileError naming `source` before anything is exported); exports (and engine builds) are
    redone only when stale: a plan also when the GPU model or the TensorRT version changes.
    precision: of the network, the target's own when None."""
    from yolo_triton.export.create_onnx import PRECISIONS, create_onnx

    if target not in TARGETS:
        raise ValueError(f"target must be one of {tuple(TARGETS)}, not {target!r}")
    t = TARGETS[target]
    precision = precision or t.precision
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    variants = [
        inspect_weights(m if isinstance(m, Variant) else replace(VARIANTS[n], weights=m), source)
        for n, m in models.items()
    ]

    out = Path(out)
    preprocess = (
        {}
        if t.preprocesses
        else {v.preprocess: [w for w in variants if w.preprocess == v.preprocess] for v in variants}
    )
    wanted = {*preprocess, *(v.name for v in variants), *(v.detector for v in variants)}
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.iterdir():  # a model left from an earlier choice would be served too
        if stale.is_dir() and stale.name not in wanted:
            shutil.rmtree(stale)

    def model(name: str, config: str, python_model: str | None = None) -> Path:
        version = out / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        (out / name / "config.pbtxt").write_text(config)
        (version / "model.py").unlink(missing_ok=True)
        if python_model:
            shutil.copy(MODEL_SOURCES / python_model, version / "model.py")
        return version

    for name, served in preprocess.items():
        model(name, preprocess_config(served, target), "preprocess.py")
    for v in variants:
        version = model(v.detector, detector_config(v, target, precision=precision), t.source)
        model(v.name, ensemble_config(v, target))
        product = version / t.artifact
        stamp = product.with_name(product.name + ".key")
        key = _export_key(v, t, precision)
        if product.exists() and stamp.exists() and stamp.read_text() == key:
            continue
        # an earlier target's artifacts and stamps go: this export rewrites model.onnx beneath them
        for artifact in {o.artifact for o in TARGETS.values()}:
            for leftover in (version / artifact, version / f"{artifact}.key"):
                leftover.unlink(missing_ok=True)
        if t.nms is None:  # the runtime loads the weights themselves
            shutil.copy(v.weights, product)
            stamp.write_text(key)
            continue
        graph = create_onnx(v.weights, v, t.nms, version / "model.onnx", precision)
        if t.engine:
            from yolo_triton.export.build_engine import build_engine

            build_engine(graph, product, v, timing_cache=out / "timing.cache")
        stamp.write_text(key)
    return out


def choose_target(requested: str = "auto", env: dict[str, str] | None = None) -> str:
    """--target auto: the GPU target of this machine or onnxruntime-cpu, by YOLO_DEVICE (auto_target)."""
    env = os.environ if env is None else env
    return auto_target(env.get("YOLO_DEVICE", "auto")) if requested == "auto" else requested


def chosen_precision(env: dict[str, str] | None = None) -> str | None:
    """YOLO_PRECISION: the network's precision over the target's own (None: unset or empty)."""
    from yolo_triton.export.create_onnx import PRECISIONS

    precision = (os.environ if env is None else env).get("YOLO_PRECISION") or None
    if precision is not None and precision not in PRECISIONS:
        raise SettingError(f"YOLO_PRECISION must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--target",
        choices=("auto", *TARGETS),
        default="auto",
        help="detector runtime; auto: pytorch-gpu (or onnxruntime-gpu where pip's PyTorch cannot use the driver)"
        " where a GPU and its runtime are, else onnxruntime-cpu"
        " (YOLO_DEVICE=gpu|cpu forces one). " + "; ".join(f"{t.name}: {t.description}" for t in TARGETS.values()),
    )
    args = parser.parse_args()
    try:
        target, precision = choose_target(args.target), chosen_precision()
        print(f"target {target}: {TARGETS[target].description}", flush=True)
        models = resolve_models()
        print(write_repository(args.out, models, target, precision, models_source()))
    except (SettingError, WeightsError, ModelsFileError) as e:
        print(e, file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
