"""Build the Triton model repository from the contract and the variant table.

For each chosen variant it writes three models, all configs generated from contract.py:

    preprocess              Python: encoded bytes -> letterboxed UINT8 + letterbox params (shared)
    <variant>_detector      the graph of export/create_onnx.py (NMS and box mapping inside), run by
                            target "onnxruntime" (CPU): a Python model with ONNX Runtime, or
                            target "tensorrt" (GPU): a TensorRT plan built here by build_engine.py
    <variant>               ensemble: image -> preprocess -> detector -> num_dets, det_boxes, ...

    python -m yolo_triton.repository [--out model_repository] [--target onnxruntime|tensorrt]
    (weights: see resolve_weights; YOLO_PREPROCESS_DEVICE=auto|gpu|cpu: where preprocess runs)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from yolo_triton import contract
from yolo_triton.contract import PREPROCESS_MODEL, VARIANTS, TensorSpec, Variant

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "model_repository"
MODEL_SOURCES = Path(__file__).resolve().parent / "triton_models"
QUEUE_DELAY_US = 2000  # how long a request may wait for others to batch with
QUEUE_BATCHES = 2  # a model queues at most this many max-size batches; past that it rejects at once


def _tensor_list(kind: str, specs: tuple[TensorSpec, ...]) -> str:
    rows = ",\n".join(f'  {{ name: "{s.name}" data_type: {s.data_type} dims: [ {", ".join(map(str, s.dims))} ] }}' for s in specs)
    return f"{kind} [\n{rows}\n]\n"


def model_config(name: str, runtime: str, max_batch_size: int, inputs, outputs, preferred: tuple[int, ...],
                 kind: str = "KIND_CPU", parameters: dict[str, str] | None = None) -> str:
    params = "".join(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in (parameters or {}).items())
    return (
        f'name: "{name}"\n{runtime}\nmax_batch_size: {max_batch_size}\n'
        + _tensor_list("input", inputs) + _tensor_list("output", outputs)
        + f"dynamic_batching {{ preferred_batch_size: [ {', '.join(map(str, preferred))} ] max_queue_delay_microseconds: {QUEUE_DELAY_US}"
        + f" default_queue_policy {{ max_queue_size: {QUEUE_BATCHES * max_batch_size} }} }}\n"
        + f"instance_group [ {{ kind: {kind} count: 1 }} ]\n" + params
    )


PYTHON = 'backend: "python"'
TARGETS = ("onnxruntime", "tensorrt")
PREPROCESS_DEVICES = ("auto", "gpu", "cpu")


def preprocess_config(variants: list[Variant], target: str = "onnxruntime", device: str = "auto") -> str:
    """device: where preprocess decodes and letterboxes ("auto": the GPU when it can)."""
    sizes = {v.imgsz for v in variants}
    if len(sizes) != 1:
        raise ValueError(f"one preprocess model serves one input size; the variants ask for {sorted(sizes)}")
    imgsz = sizes.pop()
    max_batch = max(v.max_batch_size for v in variants)
    preferred = tuple(sorted({b for v in variants for b in v.preferred_batch_sizes}))
    if device not in PREPROCESS_DEVICES:
        raise ValueError(f"preprocess device must be one of {PREPROCESS_DEVICES}, not {device!r}")
    return model_config(PREPROCESS_MODEL, PYTHON, max_batch, (contract.IMAGE_INPUT,), variants[0].detector_inputs, preferred,
                        kind="KIND_GPU" if target == "tensorrt" else "KIND_CPU", parameters={"imgsz": str(imgsz), "device": device})


def detector_config(v: Variant, target: str = "onnxruntime") -> str:
    if target == "tensorrt":
        return model_config(v.detector, 'platform: "tensorrt_plan"', v.max_batch_size, v.detector_inputs, v.outputs,
                            v.preferred_batch_sizes, kind="KIND_GPU")
    return model_config(v.detector, PYTHON, v.max_batch_size, v.detector_inputs, v.outputs, v.preferred_batch_sizes)


def ensemble_config(v: Variant) -> str:
    def maps(kind: str, specs) -> str:
        return "".join(f'      {kind} {{ key: "{s.name}" value: "{s.name}" }}\n' for s in specs)

    step = "    {{\n      model_name: \"{}\"\n      model_version: -1\n{}{}    }}"
    steps = ",\n".join((
        step.format(PREPROCESS_MODEL, maps("input_map", v.inputs), maps("output_map", v.detector_inputs)),
        step.format(v.detector, maps("input_map", v.detector_inputs), maps("output_map", v.outputs)),
    ))
    return (f'name: "{v.name}"\nplatform: "ensemble"\nmax_batch_size: {v.max_batch_size}\n'
            + _tensor_list("input", v.inputs) + _tensor_list("output", v.outputs)
            + f"ensemble_scheduling {{\n  step [\n{steps}\n  ]\n}}\n")


def resolve_weights(env: dict[str, str] | None = None) -> dict[str, str]:
    """Variant name -> weights to export, from the environment:

    YOLO_MODELS       comma-separated variants to serve (default: the one YOLO_WEIGHTS names,
                      else every variant found in YOLO_WEIGHTS_DIR, else the default YOLO11 n/s/m)
    YOLO_WEIGHTS      one .pt file; it serves the variant whose weights have its file name
                      (yolo11n.pt -> yolov11_nano), or the single variant named in YOLO_MODELS
    YOLO_WEIGHTS_DIR  a folder of .pt files named as in the variant table
    otherwise         the bare file name, which Ultralytics downloads
    """
    env = os.environ if env is None else env
    names = [n.strip() for n in env.get("YOLO_MODELS", "").split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; the variant table has {sorted(VARIANTS)}")
    if env.get("YOLO_WEIGHTS"):
        path = env["YOLO_WEIGHTS"]
        if not Path(path).is_file():
            raise FileNotFoundError(f"YOLO_WEIGHTS={path} is not a file")
        if not names:
            match = contract.variant_for_weights(path)
            if match is None:
                raise ValueError(f"no variant uses weights named {Path(path).name}; name one with YOLO_MODELS=<variant>")
            names = [match.name]
        if len(names) != 1:
            raise ValueError("YOLO_WEIGHTS gives one file: name at most one variant in YOLO_MODELS")
        return {names[0]: path}
    if env.get("YOLO_WEIGHTS_DIR"):
        folder = Path(env["YOLO_WEIGHTS_DIR"])
        chosen = names or [n for n in contract.DEFAULT_VARIANTS if (folder / VARIANTS[n].weights).is_file()]
        missing = [str(folder / VARIANTS[n].weights) for n in chosen if not (folder / VARIANTS[n].weights).is_file()]
        if missing or not chosen:
            raise FileNotFoundError(f"weights not found: {missing or folder}")
        return {n: str(folder / VARIANTS[n].weights) for n in chosen}
    return {n: VARIANTS[n].weights for n in (names or contract.DEFAULT_VARIANTS)}


def _export_key(v: Variant, weights: str, target: str) -> str:
    """Changes whenever the weights, the variant row, the target or the export code change."""
    h = hashlib.sha256(repr((v, target)).encode())
    for f in (Path(weights), ROOT / "export" / "create_onnx.py", ROOT / "yolo_triton" / "contract.py"):
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


def _gpu_name() -> str:
    return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", "0"],
                          capture_output=True, text=True, check=True).stdout.strip()


def write_repository(out: Path, weights: dict[str, str], target: str = "onnxruntime", preprocess_device: str = "auto") -> Path:
    """Write the repository for the variants in `weights`; exports (and engine builds) are redone
    only when stale: a plan also when the GPU model or the TensorRT version changes."""
    from yolo_triton.export.create_onnx import create_onnx

    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")

    out = Path(out)
    variants = [VARIANTS[n] for n in weights]
    wanted = {PREPROCESS_MODEL, *(v.name for v in variants), *(v.detector for v in variants)}
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.iterdir():  # a model left from an earlier choice would be served too
        if stale.is_dir() and stale.name not in wanted:
            shutil.rmtree(stale)

    def model(name: str, config: str, source: str | None = None) -> Path:
        version = out / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        (out / name / "config.pbtxt").write_text(config)
        if source:
            shutil.copy(MODEL_SOURCES / source, version / "model.py")
        return version

    model(PREPROCESS_MODEL, preprocess_config(variants, target, preprocess_device), "preprocess.py")
    for v in variants:
        source = "onnxruntime_detector.py" if target == "onnxruntime" else None
        version = model(v.detector, detector_config(v, target), source)
        model(v.name, ensemble_config(v))
        key = _export_key(v, weights[v.name], target)
        if target == "onnxruntime":
            product = version / "model.onnx"
        else:  # the plan, built from the EfficientNMS graph, which stays beside it for inspection
            from yolo_triton.export.build_engine import build_engine, tensorrt_version

            key += f" {_gpu_name()} TensorRT {tensorrt_version()}"
            product = version / "model.plan"
        stamp = product.with_name(product.name + ".key")
        if product.exists() and stamp.exists() and stamp.read_text() == key:
            continue
        if target == "onnxruntime":
            create_onnx(weights[v.name], v, "onnx", product)
        else:
            graph = create_onnx(weights[v.name], v, "efficient_nms", version / "model.onnx")
            build_engine(graph, product, v, timing_cache=out / "timing.cache")
        stamp.write_text(key)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--target", choices=TARGETS, default="onnxruntime", help="detector runtime: CPU or TensorRT")
    args = parser.parse_args()
    device = os.environ.get("YOLO_PREPROCESS_DEVICE", "auto")
    print(write_repository(args.out, resolve_weights(), args.target, device))


if __name__ == "__main__":
    main()
