"""The Triton model configs (config.pbtxt) of the repository, generated through a typed model: Triton's
ModelConfig protobuf, which tritonclient ships, written in its text format (which Triton parses).

    preprocess_config   the Python preprocess model of the variants of one input size and letterbox
    detector_config     a variant's detector, run by its target (yolo_triton.targets)
    ensemble_config     a variant's ensemble: image -> preprocess -> detector -> num_dets, det_boxes, ...
                        (image -> detector where the target's detector preprocesses)

Tensors, names and batch sizes come from yolo_triton.contract, all that differs per target from its row.
"""

from __future__ import annotations

import json

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from yolo_triton.contract import CLASS_NAMES_PARAMETER, IMAGE_INPUT, TensorSpec, Variant
from yolo_triton.targets import PYTHON, QUEUE_DELAY_US, TARGETS, Runtime

QUEUE_BATCHES = 2  # a model queues this many max-size batches (on the GPU at least GPU_MIN_QUEUE requests)


def _tensors(message_type, specs: tuple[TensorSpec, ...]) -> list:
    """ModelInput or ModelOutput messages of the specs."""
    return [
        message_type(name=s.name, data_type=model_config_pb2.DataType.Value(s.data_type), dims=s.dims) for s in specs
    ]


def _parameters(values: dict[str, str]) -> dict[str, model_config_pb2.ModelParameter]:
    return {k: model_config_pb2.ModelParameter(string_value=v) for k, v in values.items()}


def _text(config: model_config_pb2.ModelConfig) -> str:
    """config.pbtxt; UTF-8 as it is, so that class names stay readable."""
    return text_format.MessageToString(config, as_utf8=True)


def model_config(
    name: str,
    runtime: Runtime,
    max_batch_size: int,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
    preferred: tuple[int, ...],
    kind: str = "KIND_CPU",
    parameters: dict[str, str] | None = None,
    instances: int = 1,
    queue_delay_us: int = QUEUE_DELAY_US,
    min_queue: int = 0,
    extra: model_config_pb2.ModelConfig | None = None,
) -> str:
    """A dynamically batched model of one instance group; `extra`: fields merged in (optimization, warm-up)."""
    config = model_config_pb2.ModelConfig(
        name=name,
        backend=runtime.backend,
        platform=runtime.platform,
        max_batch_size=max_batch_size,
        input=_tensors(model_config_pb2.ModelInput, inputs),
        output=_tensors(model_config_pb2.ModelOutput, outputs),
        dynamic_batching=model_config_pb2.ModelDynamicBatching(
            preferred_batch_size=preferred,
            max_queue_delay_microseconds=queue_delay_us,
            default_queue_policy=model_config_pb2.ModelQueuePolicy(
                max_queue_size=max(QUEUE_BATCHES * max_batch_size, min_queue)
            ),
        ),
        instance_group=[
            model_config_pb2.ModelInstanceGroup(
                kind=model_config_pb2.ModelInstanceGroup.Kind.Value(kind), count=instances
            )
        ],
        parameters=_parameters(parameters or {}),
    )
    if extra is not None:
        config.MergeFrom(extra)
    return _text(config)


def preprocess_config(variants: list[Variant], target: str = "onnxruntime-cpu") -> str:
    """The preprocess model of the variants' one input size and letterbox (Variant.preprocess)."""
    kinds = {(v.imgsz, v.rect) for v in variants}
    if len(kinds) != 1:
        raise ValueError(
            f"one preprocess model serves one input size and letterbox; the variants ask for {sorted(kinds)}"
        )
    imgsz, rect = kinds.pop()
    device = TARGETS[target].device  # every GPU target decodes on the GPU
    return model_config(
        variants[0].preprocess,
        PYTHON,
        max(v.max_batch_size for v in variants),
        (IMAGE_INPUT,),
        variants[0].detector_inputs,
        tuple(sorted({b for v in variants for b in v.preferred_batch_sizes})),
        kind=device.instance_kind,
        parameters={"imgsz": str(imgsz), "rect": str(int(rect)), "device": device.name},
        instances=device.preprocess_instances,
        queue_delay_us=device.queue_delay_us,
        min_queue=device.min_queue,
    )


def warmup(v: Variant) -> list[model_config_pb2.ModelWarmup]:
    """Zeros at batch 1 and at the max batch; a rect variant's free sides at imgsz (Triton needs whole shapes)."""
    return [
        model_config_pb2.ModelWarmup(
            name=f"batch_{batch}",
            batch_size=batch,
            inputs={
                s.name: model_config_pb2.ModelWarmup.Input(
                    data_type=model_config_pb2.DataType.Value(s.data_type),
                    dims=[d if d > 0 else v.imgsz for d in s.dims],
                    zero_data=True,
                )
                for s in v.detector_inputs
            },
        )
        for batch in sorted({1, v.max_batch_size})
    ]


def detector_config(
    v: Variant,
    target: str = "onnxruntime-cpu",
    *,
    name: str | None = None,
    inputs: tuple[TensorSpec, ...] | None = None,
    outputs: tuple[TensorSpec, ...] | None = None,
    precision: str | None = None,
) -> str:
    """The variant's detector run by the target (at the target's precision unless given); name, inputs
    and outputs: another graph served as the detector would be (the benchmarks' bare network)."""
    t = TARGETS[target]
    return model_config(
        name or v.detector,
        t.runtime,
        v.max_batch_size,
        inputs or (v.inputs if t.preprocesses else v.detector_inputs),
        outputs or v.outputs,
        v.preferred_batch_sizes,
        kind=t.device.instance_kind,
        parameters=t.parameters(v, precision or t.precision) if t.parameters else None,
        instances=t.instances,
        queue_delay_us=t.device.queue_delay_us,
        min_queue=t.device.min_queue,
        extra=model_config_pb2.ModelConfig(optimization=t.optimization, model_warmup=warmup(v) if t.warmup else ()),
    )


def ensemble_config(v: Variant, target: str = "onnxruntime-cpu") -> str:
    """image -> preprocess -> detector; a target whose detector preprocesses: image -> detector."""

    def step(model: str, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]):
        return model_config_pb2.ModelEnsembling.Step(
            model_name=model,
            model_version=-1,
            input_map={s.name: s.name for s in inputs},
            output_map={s.name: s.name for s in outputs},
        )

    return _text(
        model_config_pb2.ModelConfig(
            name=v.name,
            platform="ensemble",
            max_batch_size=v.max_batch_size,
            input=_tensors(model_config_pb2.ModelInput, v.inputs),
            output=_tensors(model_config_pb2.ModelOutput, v.outputs),
            ensemble_scheduling=model_config_pb2.ModelEnsembling(
                step=[step(v.detector, v.inputs, v.outputs)]
                if TARGETS[target].preprocesses
                else [
                    step(v.preprocess, v.inputs, v.detector_inputs),
                    step(v.detector, v.detector_inputs, v.outputs),
                ]
            ),
            parameters=_parameters({CLASS_NAMES_PARAMETER: json.dumps(list(v.class_names), ensure_ascii=False)}),
        )
    )
