"""The generated configs and the exported graphs carry exactly the contract of contract.py."""

import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from yolo_triton.contract import IMAGE_INPUT, PREPROCESS_MODEL, VARIANTS, Variant, detection_outputs
from yolo_triton.model_config import QUEUE_BATCHES, detector_config, ensemble_config, preprocess_config
from yolo_triton.repository import SettingError, choose_target
from yolo_triton.targets import (
    CPU_PREPROCESS_INSTANCES,
    GPU_DETECTOR_INSTANCES,
    GPU_PREFER_NHWC,
    GPU_PREPROCESS_INSTANCES,
    GPU_QUEUE_DELAY_US,
    PYTORCH_DETECTOR_INSTANCES,
    TARGETS,
)

DTYPE = model_config_pb2.DataType


def _parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _io(tensors) -> list[tuple[str, str, list[int]]]:
    return [(t.name, DTYPE.Name(t.data_type), list(t.dims)) for t in tensors]


def _spec(specs) -> list[tuple[str, str, list[int]]]:
    return [(s.name, s.data_type, list(s.dims)) for s in specs]


def test_client_contract_values():
    """The contract every ensemble promises its clients (docs/client.md, "The contract", documents this table)."""
    assert _spec([IMAGE_INPUT]) == [("image", "TYPE_STRING", [1])]
    assert _spec(detection_outputs(100)) == [
        ("num_dets", "TYPE_INT32", [1]),
        ("det_boxes", "TYPE_FP32", [100, 4]),
        ("det_scores", "TYPE_FP32", [100]),
        ("det_classes", "TYPE_INT32", [100]),
    ]
    seeds = {
        "yolov11_nano": ("yolo11n.pt", 128),
        "yolov11_small": ("yolo11s.pt", 64),
        "yolov11_medium": ("yolo11m.pt", 32),
    }
    for name, (weights, max_batch) in seeds.items():
        v = VARIANTS[name]
        assert (v.weights, v.max_batch_size, v.imgsz, v.max_detections, v.conf, v.iou) == (
            weights,
            max_batch,
            640,
            100,
            0.25,
            0.45,
        )


def test_predict_arguments_are_the_variant_in_ultralytics_words():
    from dataclasses import replace

    v = replace(VARIANTS["yolov26_nano"], conf=0.3, iou=0.6, imgsz=320, max_detections=7, rect=True)
    assert v.predict_arguments == {
        "conf": 0.3,
        "iou": 0.6,
        "imgsz": 320,
        "max_det": 7,
        "agnostic_nms": False,
        "rect": True,
        "nms": False,  # the end-to-end head's NMS-free output, as served
        "verbose": False,
    }
    assert VARIANTS["yolov8_nano"].predict_arguments["nms"] is None  # its default: NMS after the network
    assert replace(VARIANTS["yolov8_nano"], class_agnostic=True).predict_arguments["agnostic_nms"] is True


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_ensemble_config_is_the_contract(name):
    v = VARIANTS[name]
    config = _parse(ensemble_config(v))
    assert config.name == name and config.platform == "ensemble" and config.max_batch_size == v.max_batch_size
    assert _io(config.input) == _spec(v.inputs)
    assert _io(config.output) == _spec(v.outputs)
    first, second = config.ensemble_scheduling.step
    assert first.model_name == PREPROCESS_MODEL and second.model_name == v.detector
    assert dict(first.input_map) == {"image": "image"}
    assert dict(first.output_map) == dict(second.input_map) == {s.name: s.name for s in v.detector_inputs}
    assert dict(second.output_map) == {s.name: s.name for s in v.outputs}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_an_ensemble_whose_detector_preprocesses_is_one_step(name):
    v = VARIANTS[name]
    (only,) = _parse(ensemble_config(v, "pytorch-gpu")).ensemble_scheduling.step
    assert only.model_name == v.detector
    assert dict(only.input_map) == {"image": "image"}
    assert dict(only.output_map) == {s.name: s.name for s in v.outputs}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_detector_config_is_the_contract(name, target):
    v = VARIANTS[name]
    config = _parse(detector_config(v, target))
    assert config.name == v.detector and config.max_batch_size == v.max_batch_size
    runtime = {"tensorrt": ("tensorrt_plan", ""), "onnxruntime-backend": ("", "onnxruntime")}.get(
        target, ("", "python")
    )
    assert (config.platform, config.backend) == runtime
    kind = (
        model_config_pb2.ModelInstanceGroup.KIND_GPU
        if TARGETS[target].on_gpu
        else model_config_pb2.ModelInstanceGroup.KIND_CPU
    )
    assert [g.kind for g in config.instance_group] == [kind]
    assert _io(config.input) == _spec(v.inputs if TARGETS[target].preprocesses else v.detector_inputs)
    assert _io(config.output) == _spec(v.outputs)
    assert list(config.dynamic_batching.preferred_batch_size) == list(v.preferred_batch_sizes)
    assert max(v.preferred_batch_sizes) <= v.max_batch_size
    # overload is answered by rejections, not by an unbounded queue; on the GPU one that holds
    # perf_analyzer's 512 requests in flight
    queue = config.dynamic_batching.default_queue_policy.max_queue_size
    assert queue == max(QUEUE_BATCHES * v.max_batch_size, TARGETS[target].device.min_queue)
    assert queue >= 512 if TARGETS[target].on_gpu else queue == QUEUE_BATCHES * v.max_batch_size


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_onnxruntime_backend_config(name):
    """Triton's onnxruntime backend with TensorRT inside ONNX Runtime (docs/gpu.md, "Which detector runtime"):
    the settings read by the backend of NGC 24.10 (onnxruntime_backend r24.10, src/onnxruntime.cc)."""
    v = VARIANTS[name]
    target = TARGETS["onnxruntime-backend"]
    assert (target.on_gpu, target.nms, target.precision, target.source) == (True, "onnx", "fp32", None)
    config = _parse(detector_config(v, "onnxruntime-backend"))
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert not config.optimization.execution_accelerators.cpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert dict(accelerator.parameters) == {
        "precision_mode": "FP32",  # FP16 would let TensorRT run the class offset before NMS in FP16 (overflow)
        "trt_min_subgraph_size": "100",  # the network to TensorRT, the nodes after NMS to the CUDA provider
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": "/tmp",
    }
    # no explicit profile (refused once NMS splits the graph) and no engine cache (named by nodes, not weights)
    assert not any(k.startswith(("trt_profile_", "trt_engine_cache")) for k in accelerator.parameters)
    assert {k: p.string_value for k, p in config.parameters.items()} == {"cudnn_conv_algo_search": "1"}  # HEURISTIC
    # warm-up at batch 1 and the max batch: the implicit profile is 1..max before the first request
    assert [w.batch_size for w in config.model_warmup] == sorted({1, v.max_batch_size})
    for warmup in config.model_warmup:
        assert warmup.count in (0, 1)
        assert [
            (k, DTYPE.Name(i.data_type), list(i.dims), i.zero_data) for k, i in sorted(warmup.inputs.items())
        ] == sorted((s.name, s.data_type, list(s.dims), True) for s in v.detector_inputs)


def test_rect_detector_config():
    """A rect variant: images [3, -1, -1] for every target that takes them; the onnxruntime backend's
    warm-up, which needs whole shapes, at imgsz x imgsz."""
    from dataclasses import replace

    v = replace(VARIANTS["yolov8_nano"], rect=True)
    for target in (t for t in TARGETS if not TARGETS[t].preprocesses):
        images = next(i for i in _parse(detector_config(v, target)).input if i.name == "images")
        assert list(images.dims) == [3, -1, -1]
    for warmup in _parse(detector_config(v, "onnxruntime-backend")).model_warmup:
        assert list(warmup.inputs["images"].dims) == [3, 640, 640]


def test_preprocess_config_serves_every_variant():
    variants = list(VARIANTS.values())
    config = _parse(preprocess_config(variants))
    assert config.name == PREPROCESS_MODEL and config.backend == "python"
    assert config.max_batch_size == max(v.max_batch_size for v in variants)
    assert _io(config.input) == _spec([IMAGE_INPUT])
    assert _io(config.output) == _spec(variants[0].detector_inputs)
    assert config.parameters["imgsz"].string_value == "640" and config.parameters["device"].string_value == "cpu"
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (model_config_pb2.ModelInstanceGroup.KIND_CPU, CPU_PREPROCESS_INSTANCES)
    ]
    for target in (t for t in TARGETS.values() if t.on_gpu):  # every GPU target decodes on the GPU
        gpu = _parse(preprocess_config(variants, target.name))
        assert [(g.kind, g.count) for g in gpu.instance_group] == [
            (model_config_pb2.ModelInstanceGroup.KIND_GPU, GPU_PREPROCESS_INSTANCES)
        ]
        assert gpu.parameters["device"].string_value == "gpu"
        assert gpu.dynamic_batching.max_queue_delay_microseconds == GPU_QUEUE_DELAY_US


@pytest.mark.parametrize("target", ["onnxruntime-gpu", "pytorch-gpu"])
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_gpu_python_detector_config(name, target):
    """GPU detectors in a Python model: one ONNX Runtime session or CUDA graph per batch size, up to the
    max. ONNX Runtime's inputs stay in GPU memory; PyTorch's are the encoded images, decoded on the GPU,
    and it also gets the precision and the variant's fields."""
    v = VARIANTS[name]
    config = _parse(detector_config(v, target, precision="fp32"))
    parameters = {k: p.string_value for k, p in config.parameters.items()}
    sizes = [int(b) for b in parameters["batch_sizes"].split(",")]
    assert sizes[0] == 1 and sizes[-1] == v.max_batch_size and sizes == sorted(set(sizes))
    assert all(b <= 2 * a for a, b in zip(sizes, sizes[1:]))  # at most half of a padded batch is padding
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (model_config_pb2.ModelInstanceGroup.KIND_GPU, TARGETS[target].instances)
    ]
    if target == "onnxruntime-gpu":
        assert TARGETS[target].instances == GPU_DETECTOR_INSTANCES
        assert parameters["FORCE_CPU_ONLY_INPUT_TENSORS"] == "no"
        assert parameters["prefer_nhwc"] == GPU_PREFER_NHWC
    else:
        assert TARGETS[target].instances == PYTORCH_DETECTOR_INSTANCES
        assert [i.name for i in config.input] == ["image"]
        assert parameters["preprocess_device"] == "gpu"
        assert parameters["precision"] == "fp32"
        fields = json.loads(parameters["variant"])
        assert fields["weights"] == "model.pt"  # beside model.py, not a path of the writing machine
        assert Variant(**fields, class_names=v.class_names) == replace(
            v, **{k: fields[k] for k in ("preferred_batch_sizes", "weights")}
        )


def test_target_choice(monkeypatch):
    from yolo_triton import repository

    monkeypatch.setattr(repository, "gpu_target", lambda: None)
    assert choose_target("auto", {}) == "onnxruntime-cpu"
    assert choose_target("auto", {"YOLO_DEVICE": "cpu"}) == "onnxruntime-cpu"
    assert choose_target("tensorrt", {"YOLO_DEVICE": "cpu"}) == "tensorrt"  # an explicit target is taken as given
    with pytest.raises(SettingError, match="YOLO_DEVICE=gpu"):
        choose_target("auto", {"YOLO_DEVICE": "gpu"})
    with pytest.raises(SettingError, match="YOLO_DEVICE must be one of"):
        choose_target("auto", {"YOLO_DEVICE": "tpu"})
    for gpu in ("pytorch-gpu", "onnxruntime-gpu"):
        monkeypatch.setattr(repository, "gpu_target", lambda gpu=gpu: gpu)
        assert choose_target("auto", {}) == choose_target("auto", {"YOLO_DEVICE": "gpu"}) == gpu
        assert choose_target("auto", {"YOLO_DEVICE": "cpu"}) == "onnxruntime-cpu"


ONNX_TYPES = {
    "TYPE_UINT8": onnx.TensorProto.UINT8,
    "TYPE_FP32": onnx.TensorProto.FLOAT,
    "TYPE_INT32": onnx.TensorProto.INT32,
}


def _graph_io(values) -> list[tuple[str, int, list]]:
    return [
        (x.name, x.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim])
        for x in values
    ]


def test_served_detector_graphs_are_the_contract(model_repository, served_models):
    for detector_dir in sorted(model_repository.glob("*_detector")):
        v = served_models[detector_dir.name.removesuffix("_detector")]
        graph = onnx.load(detector_dir / "1" / "model.onnx").graph
        free = lambda dims: [
            d if d > 0 else axis for d, axis in zip(dims, ("channels", "height", "width"))
        ]  # rect: free sides
        expect = lambda specs: [(s.name, ONNX_TYPES[s.data_type], ["batch", *free(s.dims)]) for s in specs]
        assert _graph_io(graph.input) == expect(v.detector_inputs)
        assert _graph_io(graph.output) == expect(v.outputs)
        ops = [n.op_type for n in graph.node]
        assert "EfficientNMS_TRT" not in ops
        consts = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
        if v.nms_free:  # no NMS: the one-to-one head's detections above conf, top K
            assert "NonMaxSuppression" not in ops
            ks = [consts[n.input[1]].tolist() for n in graph.node if n.op_type == "TopK" and n.input[1] in consts]
            assert [v.max_detections] in ks
            continue
        assert ops.count("NonMaxSuppression") == 1
        nms = next(n for n in graph.node if n.op_type == "NonMaxSuppression")
        assert consts[nms.input[2]].tolist() == [v.max_detections]
        assert np.isclose(consts[nms.input[3]][0], v.iou) and np.isclose(consts[nms.input[4]][0], v.conf)
