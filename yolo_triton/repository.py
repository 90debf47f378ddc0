"""Build the Triton model repository from the contract and the variant table.

For each chosen variant it writes three models, all configs generated from contract.py:

    preprocess              Python: encoded bytes -> letterboxed UINT8 + letterbox params (shared);
                            on the GPU (nvImageCodec + CuPy) for every GPU target, else OpenCV
    <variant>_detector      the graph of yolo_triton/export/create_onnx.py (NMS and box mapping inside), run by
                            the target (TARGETS below)
    <variant>               ensemble: image -> preprocess -> detector -> num_dets, det_boxes, ...

    python -m yolo_triton.repository [--out model_repository] [--target auto|onnxruntime-gpu|...]
    (models and weights: see yolo_triton.weights; target "auto": see auto_target, YOLO_DEVICE=auto|gpu|cpu;
     YOLO_PRECISION=fp16|fp32 overrides the target's precision of the network)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from yolo_triton import contract
from yolo_triton.contract import BUILTIN_SOURCE, CLASS_NAMES_PARAMETER, VARIANTS, TensorSpec, Variant
from yolo_triton.models_file import ModelsFileError, inspect_weights
from yolo_triton.weights import NoWeights, models_source, resolve_models

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "model_repository"
MODEL_SOURCES = Path(__file__).resolve().parent / "triton_models"
QUEUE_DELAY_US = 2000  # how long a request may wait for others to batch with
QUEUE_BATCHES = 2  # a model queues at most this many max-size batches; past that it rejects at once


def _tensor_list(kind: str, specs: tuple[TensorSpec, ...]) -> str:
    rows = ",\n".join(
        f'  {{ name: "{s.name}" data_type: {s.data_type} dims: [ {", ".join(map(str, s.dims))} ] }}' for s in specs
    )
    return f"{kind} [\n{rows}\n]\n"


def _text(value: str) -> str:
    """A string literal of protobuf's text format (UTF-8, backslash and quote escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def model_config(
    name: str,
    runtime: str,
    max_batch_size: int,
    inputs,
    outputs,
    preferred: tuple[int, ...],
    kind: str = "KIND_CPU",
    parameters: dict[str, str] | None = None,
    instances: int = 1,
    queue_delay_us: int = QUEUE_DELAY_US,
    extra: str = "",
) -> str:
    params = "".join(
        f'parameters {{ key: "{k}" value: {{ string_value: {_text(v)} }} }}\n' for k, v in (parameters or {}).items()
    )
    return (
        f'name: "{name}"\n{runtime}\nmax_batch_size: {max_batch_size}\n'
        + _tensor_list("input", inputs)
        + _tensor_list("output", outputs)
        + f"dynamic_batching {{ preferred_batch_size: [ {', '.join(map(str, preferred))} ] max_queue_delay_microseconds: {queue_delay_us}"
        + f" default_queue_policy {{ max_queue_size: {QUEUE_BATCHES * max_batch_size} }} }}\n"
        + f"instance_group [ {{ kind: {kind} count: {instances} }} ]\n"
        + params
        + extra
    )


PYTHON = 'backend: "python"'


@dataclass(frozen=True)
class Target:
    """How the detector runs; the ensemble, its contract and the graph's semantics are the same for all."""

    name: str
    on_gpu: bool
    runtime: str  # the config's backend or platform line
    nms: str  # the NMS flavour of the exported graph (create_onnx.NMS_FLAVOURS)
    precision: str  # of the network (create_onnx.PRECISIONS); YOLO_PRECISION overrides
    source: str | None  # the Python model copied to <detector>/1/model.py, if any
    description: str


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "onnxruntime-cpu",
            False,
            PYTHON,
            "onnx",
            "fp32",
            "onnxruntime_detector.py",
            "ONNX Runtime on the CPU in a Python model: any machine (make serve, CI)",
        ),
        Target(
            "onnxruntime-gpu",
            True,
            PYTHON,
            "onnx",
            "fp16",
            "onnxruntime_gpu_detector.py",
            "ONNX Runtime GPU in a Python model, input by IO binding from GPU memory: any CUDA GPU with pip (make serve)",
        ),
        Target(
            "tensorrt",
            True,
            'platform: "tensorrt_plan"',
            "efficient_nms",
            "fp16",
            None,
            "a TensorRT plan built here by build_engine.py: NVIDIA's containers",
        ),
        Target(
            "onnxruntime-backend",
            True,
            'backend: "onnxruntime"',
            "onnx",
            "fp32",
            None,
            "Triton's own ONNX Runtime backend on the GPU, TensorRT inside ONNX Runtime where it can:"
            " NVIDIA's containers, when no plan can be built",
        ),
    )
}
DEVICES = ("auto", "gpu", "cpu")

# GPU targets, from perf_analyzer runs on an H100 (benchmarks/RESULTS.md, "GPU serving settings"):
GPU_PREPROCESS_INSTANCES = 4  # preprocess alone at 256 in flight: 1,282 images/s with 2, 2,069 with 4
GPU_DETECTOR_INSTANCES = 1  # detector alone at 128-256 in flight: 1,085-1,107 images/s with 1, 856-883 with 2 (one GPU)
GPU_PREFER_NHWC = "0"  # ONNX Runtime's NHWC convolutions, FP16 graph at batch 128: 1,442 images/s, NCHW 1,804
# On the CPU two instances each (benchmarks/RESULTS.md, "Tail latency at low load"): with one, a
# request arriving while it finishes the previous one waits up to Triton 2.51's dynamic batcher's
# default 500 ms (preprocess alone at c=1: p99 506 -> 11 ms with two). The CPU detector runs its
# batches in calls of a few images (onnxruntime_detector.SESSION_BATCH), which bounds the memory
# each instance keeps.
CPU_PREPROCESS_INSTANCES = 2
CPU_DETECTOR_INSTANCES = 2
GPU_QUEUE_DELAY_US = 0  # an instance that is free takes what is queued; under load batches form while it works


def onnxruntime_batch_sizes(max_batch_size: int) -> tuple[int, ...]:
    """The batch sizes onnxruntime-gpu keeps a session for (an execution is padded up to the next):
    powers of two, and the maximum; at most half of a padded batch is padding."""
    sizes = [1]
    while sizes[-1] * 2 < max_batch_size:
        sizes.append(sizes[-1] * 2)
    return (*sizes, max_batch_size) if max_batch_size > 1 else (1,)


def onnxruntime_gpu_parameters(max_batch_size: int) -> dict[str, str]:
    """The config parameters of a model run by onnxruntime_gpu_detector.py: inputs wherever they
    are (GPU memory from preprocess), and its batch sizes."""
    return {
        "FORCE_CPU_ONLY_INPUT_TENSORS": "no",
        "batch_sizes": ",".join(map(str, onnxruntime_batch_sizes(max_batch_size))),
        "prefer_nhwc": GPU_PREFER_NHWC,
    }


def preprocess_config(variants: list[Variant], target: str = "onnxruntime-cpu") -> str:
    """The preprocess model of the variants' one input size and letterbox (Variant.preprocess)."""
    kinds = {(v.imgsz, v.rect) for v in variants}
    if len(kinds) != 1:
        raise ValueError(
            f"one preprocess model serves one input size and letterbox; the variants ask for {sorted(kinds)}"
        )
    imgsz, rect = kinds.pop()
    max_batch = max(v.max_batch_size for v in variants)
    preferred = tuple(sorted({b for v in variants for b in v.preferred_batch_sizes}))
    gpu = TARGETS[target].on_gpu
    return model_config(
        variants[0].preprocess,
        PYTHON,
        max_batch,
        (contract.IMAGE_INPUT,),
        variants[0].detector_inputs,
        preferred,
        kind="KIND_GPU" if gpu else "KIND_CPU",
        parameters={"imgsz": str(imgsz), "rect": str(int(rect)), "device": "gpu" if gpu else "cpu"},
        instances=GPU_PREPROCESS_INSTANCES if gpu else CPU_PREPROCESS_INSTANCES,
        queue_delay_us=GPU_QUEUE_DELAY_US if gpu else QUEUE_DELAY_US,
    )


def detector_config(v: Variant, target: str = "onnxruntime-cpu") -> str:
    t = TARGETS[target]
    if not t.on_gpu:
        return model_config(
            v.detector,
            t.runtime,
            v.max_batch_size,
            v.detector_inputs,
            v.outputs,
            v.preferred_batch_sizes,
            instances=CPU_DETECTOR_INSTANCES,
        )
    parameters, extra = None, ""
    if t.name == "onnxruntime-gpu":
        parameters = onnxruntime_gpu_parameters(v.max_batch_size)
    if t.name == "onnxruntime-backend":
        # Triton's onnxruntime backend (NGC 24.10: ONNX Runtime 1.19.2, TensorRT 10.5). It cannot pad
        # a batch, so each execution has its own batch size. The TensorRT execution accelerator:
        # - FP32 graph, precision_mode FP32 (TensorRT still uses TF32 for convolutions): with FP16
        #   allowed TensorRT may run any layer in FP16, and the class offset before NMS (class x 7680)
        #   exceeds FP16's 65504;
        # - no explicit trt_profile_* shapes: TensorRT's ONNX parser leaves NonMaxSuppression to ONNX
        #   Runtime, and ONNX Runtime refuses explicit profiles unless every dynamic input of every
        #   TensorRT part (those after NMS too) has one. The profile grows to the batch sizes seen,
        #   rebuilding the engine each time it grows: model_warmup runs batch 1 and the max batch at
        #   load, so serving starts with one profile 1..max and never rebuilds;
        # - trt_min_subgraph_size 100: only the network (260+ nodes) goes to TensorRT; the ~20 nodes
        #   after NMS, whose shapes follow the number of detections, stay on the CUDA provider;
        # - no engine cache: the cache names engines by node names, not weights (variants of one
        #   architecture, or new weights for a variant, would load a stale engine); the engine is
        #   built at each load, the timing cache in /tmp (writable in compose and the chart) speeds it.
        # cudnn_conv_algo_search 1 (HEURISTIC): for convolutions left to the CUDA provider, whose
        # default (EXHAUSTIVE) searches again on every new batch shape (seconds each).
        parameters = {"cudnn_conv_algo_search": "1"}
        trt = {
            "precision_mode": "FP32",
            "trt_min_subgraph_size": "100",
            "trt_timing_cache_enable": "1",
            "trt_timing_cache_path": "/tmp",
        }
        extra = (
            'optimization { execution_accelerators { gpu_execution_accelerator: [ { name: "tensorrt" '
            + " ".join(f'parameters {{ key: "{k}" value: "{val}" }}' for k, val in trt.items())
            + " } ] } }\n"
        )

        def dims(spec):  # a rect variant's free sides are warmed at imgsz
            return ", ".join(str(d if d > 0 else v.imgsz) for d in spec.dims)

        warm = [
            (
                b,
                " ".join(
                    f'inputs {{ key: "{s.name}" value: {{ data_type: {s.data_type} dims: [ {dims(s)} ] zero_data: true }} }}'
                    for s in v.detector_inputs
                ),
            )
            for b in sorted({1, v.max_batch_size})
        ]
        extra += (
            "model_warmup [\n"
            + ",\n".join(f'  {{ name: "batch_{b}" batch_size: {b} {ins} }}' for b, ins in warm)
            + "\n]\n"
        )
    return model_config(
        v.detector,
        t.runtime,
        v.max_batch_size,
        v.detector_inputs,
        v.outputs,
        v.preferred_batch_sizes,
        kind="KIND_GPU",
        parameters=parameters,
        instances=GPU_DETECTOR_INSTANCES,
        queue_delay_us=GPU_QUEUE_DELAY_US,
        extra=extra,
    )


def gpu_runtime_available() -> bool:
    """CuPy, nvImageCodec and ONNX Runtime's CUDA provider importable here, and a CUDA GPU."""
    try:
        import cupy
        import onnxruntime
        from nvidia import nvimgcodec  # noqa: F401

        return (
            "CUDAExecutionProvider" in onnxruntime.get_available_providers() and cupy.cuda.runtime.getDeviceCount() > 0
        )
    except Exception:
        return False


def auto_target(device: str = "auto") -> str:
    """YOLO_DEVICE: "gpu" or "cpu" force a side; "auto" serves on the GPU when its runtime is here."""
    if device not in DEVICES:
        raise ValueError(f"YOLO_DEVICE must be one of {DEVICES}, not {device!r}")
    if device == "gpu" and not gpu_runtime_available():
        raise RuntimeError("YOLO_DEVICE=gpu, but CuPy, nvImageCodec, ONNX Runtime GPU or a CUDA GPU is missing here")
    on_gpu = device == "gpu" or (device == "auto" and gpu_runtime_available())
    return "onnxruntime-gpu" if on_gpu else "onnxruntime-cpu"


def ensemble_config(v: Variant) -> str:
    def maps(kind: str, specs) -> str:
        return "".join(f'      {kind} {{ key: "{s.name}" value: "{s.name}" }}\n' for s in specs)

    step = '    {{\n      model_name: "{}"\n      model_version: -1\n{}{}    }}'
    steps = ",\n".join(
        (
            step.format(v.preprocess, maps("input_map", v.inputs), maps("output_map", v.detector_inputs)),
            step.format(v.detector, maps("input_map", v.detector_inputs), maps("output_map", v.outputs)),
        )
    )
    return (
        f'name: "{v.name}"\nplatform: "ensemble"\nmax_batch_size: {v.max_batch_size}\n'
        + _tensor_list("input", v.inputs)
        + _tensor_list("output", v.outputs)
        + f"ensemble_scheduling {{\n  step [\n{steps}\n  ]\n}}\n"
        + f'parameters {{ key: "{CLASS_NAMES_PARAMETER}" value: {{ string_value: {_text(json.dumps(list(v.class_names), ensure_ascii=False))} }} }}\n'
    )


def _export_key(v: Variant, weights: str, target: Target, precision: str) -> str:
    """Changes whenever the weights, the variant row, the target, the precision or the code that
    shapes the artifact change (the modules' own files, wherever the package is installed)."""
    from yolo_triton import models_file
    from yolo_triton.export import build_engine, create_onnx

    h = hashlib.sha256(repr((v, target, precision)).encode())
    for f in (Path(weights), *(Path(m.__file__) for m in (create_onnx, build_engine, contract, models_file))):
        h.update(f.read_bytes() if f.is_file() else b"missing")
    return h.hexdigest()


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
    preprocess = {v.preprocess: [w for w in variants if w.preprocess == v.preprocess] for v in variants}
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
        version = model(v.detector, detector_config(v, target), t.source)
        model(v.name, ensemble_config(v))
        key = _export_key(v, v.weights, t, precision)
        if t.name == "tensorrt":  # the plan, built from the EfficientNMS graph, which stays beside it for inspection
            from yolo_triton.export.build_engine import build_engine, tensorrt_version

            key += f" {_gpu_name()} TensorRT {tensorrt_version()}"
            product = version / "model.plan"
        else:
            product = version / "model.onnx"
        stamp = product.with_name(product.name + ".key")
        if product.exists() and stamp.exists() and stamp.read_text() == key:
            continue
        graph = create_onnx(v.weights, v, t.nms, version / "model.onnx", precision)
        if t.name == "tensorrt":
            build_engine(graph, product, v, timing_cache=out / "timing.cache")
        stamp.write_text(key)
    return out


def choose_target(requested: str = "auto", env: dict[str, str] | None = None) -> str:
    """--target auto: onnxruntime-gpu or onnxruntime-cpu by YOLO_DEVICE (auto_target)."""
    env = os.environ if env is None else env
    return auto_target(env.get("YOLO_DEVICE", "auto")) if requested == "auto" else requested


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--target",
        choices=("auto", *TARGETS),
        default="auto",
        help="detector runtime; auto: onnxruntime-gpu where a GPU and its runtime are, else onnxruntime-cpu"
        " (YOLO_DEVICE=gpu|cpu forces one). " + "; ".join(f"{t.name}: {t.description}" for t in TARGETS.values()),
    )
    args = parser.parse_args()
    target = choose_target(args.target)
    print(f"target {target}: {TARGETS[target].description}", flush=True)
    try:
        models = resolve_models()
        print(write_repository(args.out, models, target, os.environ.get("YOLO_PRECISION") or None, models_source()))
    except (NoWeights, ModelsFileError) as e:
        print(e, file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
