"""yolo_triton/export/build_engine.py and the TensorRT repository, against a stand-in of TensorRT's Python API.

TensorRT cannot be installed on these machines (its wheels download from NVIDIA's own index), so
FakeTensorRT below records
what the build asks of it. What it proves: the plugins are registered before parsing, a strongly
typed network with no precision flags (the graph's own types decide: FP16 network, FP32 NMS and
box mapping, checked on the graph itself), one profile per input (1 / largest preferred / max batch), the
timing cache read and written, and the plan written exactly as TensorRT serialised it (no header).
The real build runs in the NGC TensorRT container (docker-compose.yml, service `engine`)."""

import sys
import types
from pathlib import Path

import onnx
import pytest
from conftest import weights_of

from yolo_triton import repository
from yolo_triton.contract import VARIANTS
from yolo_triton.export.build_engine import build_engine, optimisation_profile
from yolo_triton.model_config import detector_config

PLAN = b"\x00raw serialized engine\xff"


class FakeTensorRT(types.ModuleType):
    __version__ = "10.5.0.fake"
    float32, float16, int32 = "float32", "float16", "int32"

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 2

    class MemoryPoolType:
        WORKSPACE = "WORKSPACE"

    def __init__(self):
        super().__init__("tensorrt")
        self.calls, self.configs, self.parse_ok = [], [], True
        fake = self

        class Network:
            def __init__(self, flags):
                self.flags, self.nodes = flags, []

        class OnnxParser:
            def __init__(self, network, logger):
                self.network, self.num_errors = network, 0

            def parse_from_file(self, path):
                fake.calls.append(("parse", path))
                self.network.nodes = [n.name for n in onnx.load(path).graph.node]
                self.num_errors = 0 if fake.parse_ok else 1
                return fake.parse_ok

            def get_error(self, i):
                return "In node 3: unsupported op"

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, smallest, typical, largest):
                self.shapes[name] = (smallest, typical, largest)

        class TimingCache:
            def __init__(self, data):
                self.data = data

            def serialize(self):
                return self.data + b"+tuned"

        class Config:
            def __init__(self):
                self.flags, self.profiles, self.pools, self.cache = set(), [], {}, None
                fake.configs.append(self)

            def set_memory_pool_limit(self, pool, size):
                self.pools[pool] = size

            def set_flag(self, flag):
                self.flags.add(flag)

            def add_optimization_profile(self, profile):
                self.profiles.append(profile)

            def create_timing_cache(self, data):
                fake.calls.append(("timing cache in", data))
                return TimingCache(data)

            def set_timing_cache(self, cache, ignore_mismatch):
                self.cache = cache

            def get_timing_cache(self):
                return self.cache

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                fake.network = Network(flags)
                return fake.network

            create_builder_config = staticmethod(Config)
            create_optimization_profile = staticmethod(Profile)

            def build_serialized_network(self, network, config):
                fake.calls.append(("build",))
                return PLAN

        self.Builder, self.OnnxParser = Builder, OnnxParser

    def init_libnvinfer_plugins(self, logger, namespace):
        self.calls.append(("plugins", namespace))


@pytest.fixture
def trt(monkeypatch):
    fake = FakeTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake


@pytest.fixture(scope="module")
def efficient_graph(tmp_path_factory):
    from yolo_triton.export.create_onnx import create_onnx

    return create_onnx(
        weights_of("yolov11_nano"),
        VARIANTS["yolov11_nano"],
        "efficient_nms",
        tmp_path_factory.mktemp("onnx") / "model.onnx",
    )


def test_profile_spans_one_to_max_batch():
    v = VARIANTS["yolov11_medium"]
    assert optimisation_profile(v) == {
        "images": ((1, 3, 640, 640), (32, 3, 640, 640), (32, 3, 640, 640)),
        "letterbox": ((1, 6), (32, 6), (32, 6)),
    }


def test_rect_profile_spans_every_stride_multiple_up_to_imgsz(tmp_path):
    """A rect variant's plan takes any height and width from 32 to imgsz; the EfficientNMS graph it
    is built from has them free."""
    from dataclasses import replace

    from yolo_triton.export.create_onnx import create_onnx

    v = replace(VARIANTS["yolov8_nano"], rect=True, max_batch_size=16, preferred_batch_sizes=(8, 16))
    assert optimisation_profile(v) == {
        "images": ((1, 3, 32, 32), (16, 3, 640, 640), (16, 3, 640, 640)),
        "letterbox": ((1, 6), (16, 6), (16, 6)),
    }
    graph = onnx.load(create_onnx(weights_of("yolov8_nano"), v, "efficient_nms", tmp_path / "model.onnx"))
    images = graph.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in images] == ["batch", 3, "height", "width"]
    assert [n.op_type for n in graph.graph.node].count("EfficientNMS_TRT") == 1


def test_build_writes_the_raw_plan(trt, efficient_graph, tmp_path):
    plan = build_engine(
        efficient_graph, tmp_path / "model.plan", VARIANTS["yolov11_nano"], timing_cache=tmp_path / "cache"
    )
    assert plan.read_bytes() == PLAN  # exactly TensorRT's bytes: no Ultralytics metadata header
    assert [c[0] for c in trt.calls] == ["plugins", "parse", "timing cache in", "build"]
    (config,) = trt.configs
    assert trt.network.flags == 1 << FakeTensorRT.NetworkDefinitionCreationFlag.STRONGLY_TYPED
    assert (
        config.flags == set()
    )  # the graph's types decide; TensorRT refuses precision flags on a strongly typed network
    assert config.profiles[0].shapes == optimisation_profile(VARIANTS["yolov11_nano"])
    assert (tmp_path / "cache").read_bytes() == b"+tuned"
    build_engine(efficient_graph, tmp_path / "again.plan", VARIANTS["yolov11_nano"], timing_cache=tmp_path / "cache")
    assert ("timing cache in", b"+tuned") in trt.calls  # the second build starts from the first one's cache


def test_parse_errors_are_reported(trt, efficient_graph, tmp_path):
    trt.parse_ok = False
    with pytest.raises(RuntimeError, match="unsupported op"):
        build_engine(efficient_graph, tmp_path / "model.plan", VARIANTS["yolov11_nano"])
    assert not (tmp_path / "model.plan").exists()


def test_tensorrt_repository(trt, monkeypatch, tmp_path):
    gpu = ["NVIDIA RTX A6000"]
    monkeypatch.setattr(repository, "_gpu_name", lambda: gpu[0])
    weights = {"yolov11_nano": str(weights_of("yolov11_nano"))}
    out = repository.write_repository(tmp_path / "repo", weights, target="onnxruntime-cpu")
    version = out / "yolov11_nano_detector" / "1"
    nms_ops = lambda: (
        {n.op_type for n in onnx.load(version / "model.onnx").graph.node} & {"EfficientNMS_TRT", "NonMaxSuppression"}
    )
    assert nms_ops() == {"NonMaxSuppression"}
    out = repository.write_repository(out, weights, target="tensorrt")
    assert (version / "model.plan").read_bytes() == PLAN and not (version / "model.py").exists()
    assert (out / "yolov11_nano_detector" / "config.pbtxt").read_text() == detector_config(
        VARIANTS["yolov11_nano"], "tensorrt"
    )
    assert [n.op_type for n in onnx.load(version / "model.onnx").graph.node].count("EfficientNMS_TRT") == 1
    builds = lambda: sum(c[0] == "build" for c in trt.calls)
    repository.write_repository(out, weights, target="tensorrt")
    assert builds() == 1, "an up-to-date plan is not rebuilt"
    repository.write_repository(out, weights, target="onnxruntime-cpu")  # the plan's graph overwrote the CPU's
    assert nms_ops() == {"NonMaxSuppression"}, "back on the CPU, the graph the plan was built from is not served"
    assert sorted(p.name for p in version.iterdir()) == ["model.onnx", "model.onnx.key", "model.py"]
    repository.write_repository(out, weights, target="tensorrt")
    assert builds() == 2, "the plan another target removed is built again"
    gpu[0] = "NVIDIA H100 80GB HBM3"
    repository.write_repository(out, weights, target="tensorrt")
    assert builds() == 3, "a plan is rebuilt for another GPU model"
    from yolo_triton.export import build_engine as builder_module

    changed = tmp_path / "build_engine.py"  # the engine builder's code changes (any install: its module's file)
    changed.write_text(Path(builder_module.__file__).read_text() + "\n# changed\n")
    monkeypatch.setattr(builder_module, "__file__", str(changed))
    repository.write_repository(out, weights, target="tensorrt")
    assert builds() == 4, "a change of the export code rebuilds the plan"
    real_version = repository.importlib.metadata.version
    monkeypatch.setattr(repository.importlib.metadata, "version", lambda d: "99.0" if d == "onnx" else real_version(d))
    repository.write_repository(out, weights, target="tensorrt")
    assert builds() == 5, "another version of the export toolchain rebuilds the plan"
