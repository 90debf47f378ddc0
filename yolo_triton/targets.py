"""The detector targets: one row per way of running a variant's detector, and all that differs between them.

A row says which graph is exported (its NMS flavour and precision), what runs it and where, how
the served artifact is built, and what the detector's config adds. yolo_triton.model_config turns
rows into configs, yolo_triton.repository into files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

from tritonclient.grpc import model_config_pb2

from yolo_triton.contract import Variant

QUEUE_DELAY_US = 2000  # how long a request may wait for others to batch with

# GPU targets, from perf_analyzer runs on an H100 (benchmarks/RESULTS.md, "GPU serving settings"):
GPU_PREPROCESS_INSTANCES = 4  # preprocess alone at 256 in flight: 1,282 images/s with 2, 2,069 with 4
GPU_DETECTOR_INSTANCES = (
    1  # onnxruntime-gpu alone at 128-256 in flight: 1,085-1,107 images/s with 1, 856-883 with 2 (one GPU)
)
# pytorch-gpu: each instance decodes, letterboxes and runs the network in its own process; four overlap
# one's work in Python with the others' on the GPU. The ensemble on an H100, concurrency 256 / 512:
# 2,303 / 2,450 images/s with two instances, 2,964 / 3,139 with four (benchmarks/results/h100/run14_final.json);
# six against four: 3,298 / 3,600 against 3,369 / 3,559, and 10-26% less at 1 to 64 in flight (run16)
PYTORCH_DETECTOR_INSTANCES = 4
GPU_PREFER_NHWC = "0"  # ONNX Runtime's NHWC convolutions, FP16 graph at batch 128: 1,442 images/s, NCHW 1,804
# On the CPU two instances each (benchmarks/RESULTS.md, "Tail latency at low load"): with one, a
# request arriving while it finishes the previous one waits up to Triton 2.51's dynamic batcher's
# default 500 ms (preprocess alone at c=1: p99 506 -> 11 ms with two). The CPU detector runs its
# batches in calls of a few images (onnxruntime_detector.SESSION_BATCH), which bounds the memory
# each instance keeps.
CPU_PREPROCESS_INSTANCES = 2
CPU_DETECTOR_INSTANCES = 2
GPU_QUEUE_DELAY_US = 0  # an instance that is free takes what is queued; under load batches form while it works
# Requests a GPU model queues at least (else QUEUE_BATCHES max-size batches, model_config): perf_analyzer at
# concurrency 512 is answered without refusals; the detector drains 1,024 requests in a fraction of a second.
GPU_MIN_QUEUE = 1024


@dataclass(frozen=True)
class Device:
    """Where a target's preprocess and detector run, with the settings measured there."""

    name: str  # preprocess's `device` parameter
    instance_kind: str  # of the models' instance_group
    preprocess_instances: int
    detector_instances: int
    queue_delay_us: int
    min_queue: int = 0  # requests a model queues at least before it refuses


GPU = Device("gpu", "KIND_GPU", GPU_PREPROCESS_INSTANCES, GPU_DETECTOR_INSTANCES, GPU_QUEUE_DELAY_US, GPU_MIN_QUEUE)
CPU = Device("cpu", "KIND_CPU", CPU_PREPROCESS_INSTANCES, CPU_DETECTOR_INSTANCES, QUEUE_DELAY_US)


@dataclass(frozen=True)
class Runtime:
    """What runs a model: a Triton backend, or a platform (Triton picks the backend for the artifact's format)."""

    backend: str = ""
    platform: str = ""


PYTHON = Runtime(backend="python")


def padded_batch_sizes(max_batch_size: int) -> tuple[int, ...]:
    """The batch sizes a GPU detector keeps a session or CUDA graph for (an execution is padded up to
    the next): powers of two, and the maximum; at most half of a padded batch is padding."""
    sizes = [1]
    while sizes[-1] * 2 < max_batch_size:
        sizes.append(sizes[-1] * 2)
    return (*sizes, max_batch_size) if max_batch_size > 1 else (1,)


def onnxruntime_gpu_parameters(v: Variant, precision: str) -> dict[str, str]:
    """The config parameters of a model run by onnxruntime_gpu_detector.py: inputs wherever they are
    (GPU memory from preprocess), its batch sizes and layout."""
    return {
        "FORCE_CPU_ONLY_INPUT_TENSORS": "no",
        "batch_sizes": ",".join(map(str, padded_batch_sizes(v.max_batch_size))),
        "prefer_nhwc": GPU_PREFER_NHWC,
    }


def pytorch_gpu_parameters(v: Variant, precision: str) -> dict[str, str]:
    """The config parameters of a model run by pytorch_detector.py: its batch sizes, precision, the
    variant's fields (thresholds, K, head kind) that the post-processing follows, and where it decodes
    and letterboxes (the GPU)."""
    # the weights are the model.pt beside model.py: no path of the machine that wrote the repository
    fields = {**{k: val for k, val in asdict(v).items() if k != "class_names"}, "weights": "model.pt"}
    return {
        "batch_sizes": ",".join(map(str, padded_batch_sizes(v.max_batch_size))),
        "precision": precision,
        "variant": json.dumps(fields),
        "preprocess_device": GPU.name,
    }


@dataclass(frozen=True)
class Target:
    """How the detector runs; the ensemble, its contract and the graph's semantics are the same for all."""

    name: str
    description: str
    nms: str | None  # the NMS flavour of the exported graph (create_onnx.NMS_FLAVOURS); None: no graph, the weights
    precision: str  # of the network (create_onnx.PRECISIONS); YOLO_PRECISION overrides
    runtime: Runtime
    device: Device
    source: str | None = None  # the Python model (triton_models/) copied to <detector>/1/model.py, if any
    artifact: str = "model.onnx"  # the file in the detector's version folder that is served (the weights: model.pt)
    # The build step: the ONNX graph alone, or then a TensorRT engine built from it (export/build_engine.py).
    # An engine runs only on the GPU model and TensorRT version that built it: both join its export key.
    engine: bool = False
    parameters: Callable[[Variant, str], dict[str, str]] | None = (
        None  # the detector config's, by variant and precision
    )
    optimization: model_config_pb2.ModelOptimizationPolicy | None = None  # the detector config's, if any
    warmup: bool = False  # the detector is warmed at load at batch 1 and the max batch (model_config.warmup)
    detector_instances: int | None = None  # of the detector, where not the device's
    # the detector takes the encoded images and decodes and letterboxes them itself: no preprocess model,
    # no hand-off tensors between models (the ensemble has the detector alone)
    preprocesses: bool = False

    @property
    def instances(self) -> int:
        return self.detector_instances or self.device.detector_instances

    @property
    def on_gpu(self) -> bool:
        return self.device is GPU


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
_Accelerators = model_config_pb2.ModelOptimizationPolicy.ExecutionAccelerators
TENSORRT_IN_ONNXRUNTIME = model_config_pb2.ModelOptimizationPolicy(
    execution_accelerators=_Accelerators(
        gpu_execution_accelerator=[
            _Accelerators.Accelerator(
                name="tensorrt",
                parameters={
                    "precision_mode": "FP32",
                    "trt_min_subgraph_size": "100",
                    "trt_timing_cache_enable": "1",
                    "trt_timing_cache_path": "/tmp",
                },
            )
        ]
    )
)

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "onnxruntime-cpu",
            "ONNX Runtime on the CPU in a Python model: any machine (make serve, CI)",
            nms="onnx",
            precision="fp32",
            runtime=PYTHON,
            device=CPU,
            source="onnxruntime_detector.py",
        ),
        Target(
            "onnxruntime-gpu",
            "ONNX Runtime GPU in a Python model, input by IO binding from GPU memory:"
            " any CUDA GPU with pip (make serve)",
            nms="onnx",
            precision="fp16",
            runtime=PYTHON,
            device=GPU,
            source="onnxruntime_gpu_detector.py",
            parameters=onnxruntime_gpu_parameters,
        ),
        Target(
            "pytorch-gpu",
            "PyTorch in a Python model that also decodes and letterboxes (nvImageCodec + CuPy, handed to PyTorch"
            " by DLPack in the same process): Ultralytics' network as one CUDA graph per batch size, NMS for the"
            " whole batch on the GPU: a CUDA GPU whose driver runs pip's PyTorch (make serve)",
            nms=None,
            precision="fp16",
            runtime=PYTHON,
            device=GPU,
            source="pytorch_detector.py",
            artifact="model.pt",
            parameters=pytorch_gpu_parameters,
            detector_instances=PYTORCH_DETECTOR_INSTANCES,
            preprocesses=True,
        ),
        Target(
            "tensorrt",
            "a TensorRT plan built here by build_engine.py: NVIDIA's containers",
            nms="efficient_nms",  # the plan is built from the EfficientNMS graph, which stays beside it for inspection
            precision="fp16",
            runtime=Runtime(platform="tensorrt_plan"),
            device=GPU,
            artifact="model.plan",
            engine=True,
        ),
        Target(
            "onnxruntime-backend",
            "Triton's own ONNX Runtime backend on the GPU, TensorRT inside ONNX Runtime where it can:"
            " NVIDIA's containers, when no plan can be built",
            nms="onnx",
            precision="fp32",
            runtime=Runtime(backend="onnxruntime"),
            device=GPU,
            # cudnn_conv_algo_search 1 (HEURISTIC): for convolutions left to the CUDA provider, whose
            # default (EXHAUSTIVE) searches again on every new batch shape (seconds each).
            parameters=lambda v, precision: {"cudnn_conv_algo_search": "1"},
            optimization=TENSORRT_IN_ONNXRUNTIME,
            warmup=True,
        ),
    )
}
