"""The TensorRT graph's structure, for every variant: both NMS flavours come from one code path;
the TensorRT flavour carries one EfficientNMS_TRT node with the variant's attributes, fed boxes
[B, N, 4] and scores [B, N, C] in FP32; YOLO26 (NMS-free) has no NMS node in either flavour.
(The semantics are in test_efficient_nms_semantics.py.)"""

from dataclasses import replace

import onnx
import pytest
from conftest import WEIGHTS_DIR

from yolo_triton.contract import VARIANTS
from yolo_triton.export.create_onnx import PLUGIN_DOMAIN, build_detector_graph, export_network

AGNOSTIC = replace(VARIANTS["yolov11_nano"], name="yolov11_nano_agnostic", class_agnostic=True)
ALL = [*VARIANTS.values(), AGNOSTIC]


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    """Ultralytics' export of each weights file, once (the NMS-free one for YOLO26)."""
    cache = {}

    def network(v):
        key = (v.weights, v.nms_free)
        if key not in cache:
            cache[key] = export_network(WEIGHTS_DIR / v.weights, v, tmp_path_factory.mktemp("export"))
        return cache[key]

    return network


def _attributes(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _value_infos(model) -> dict:
    inferred = onnx.shape_inference.infer_shapes(model)
    return {
        v.name: v.type.tensor_type for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
    }


def _shape(tensor_type) -> list:
    return [d.dim_param or d.dim_value for d in tensor_type.shape.dim]


@pytest.mark.parametrize("v", ALL, ids=lambda v: v.name)
def test_graph_structure(networks, v):
    graphs = {nms: build_detector_graph(networks(v), v, nms) for nms in ("onnx", "efficient_nms")}
    trt, cpu = graphs["efficient_nms"], graphs["onnx"]
    assert trt.graph.input == cpu.graph.input and trt.graph.output == cpu.graph.output
    ops = {name: [n.op_type for n in g.graph.node] for name, g in graphs.items()}
    if v.nms_free:
        assert "EfficientNMS_TRT" not in ops["efficient_nms"] and "NonMaxSuppression" not in ops["onnx"]
        assert ops["onnx"] == ops["efficient_nms"]
        return
    assert ops["efficient_nms"].count("EfficientNMS_TRT") == 1 and "NonMaxSuppression" not in ops["efficient_nms"]
    assert ops["onnx"].count("NonMaxSuppression") == 1 and "EfficientNMS_TRT" not in ops["onnx"]
    (node,) = [n for n in trt.graph.node if n.op_type == "EfficientNMS_TRT"]
    assert node.domain == PLUGIN_DOMAIN
    assert _attributes(node) == {
        "plugin_version": b"1",
        "background_class": -1,
        "box_coding": 0,
        "score_activation": 0,
        "iou_threshold": pytest.approx(v.iou),
        "score_threshold": pytest.approx(v.conf),
        "max_output_boxes": v.max_detections,
        "class_agnostic": int(v.class_agnostic),
    }
    assert {o.domain: o.version for o in trt.opset_import} == {"": 17, PLUGIN_DOMAIN: 1}
    assert trt.ir_version == cpu.ir_version == 8
    infos = _value_infos(trt)  # the plugin's inputs are made by standard ops: shape inference sees them
    boxes, scores = (infos[name] for name in node.input)
    assert _shape(boxes) == ["batch", 8400, 4] and _shape(scores) == ["batch", 8400, v.num_classes]
    assert boxes.elem_type == scores.elem_type == onnx.TensorProto.FLOAT
    assert len(node.output) == 4  # num_detections, boxes, scores, classes


def test_unknown_flavour_is_refused(networks):
    with pytest.raises(ValueError, match="nms must be one of"):
        build_detector_graph(networks(VARIANTS["yolov11_nano"]), VARIANTS["yolov11_nano"], "fast")


def test_head_mismatch_is_refused(networks):
    with pytest.raises(ValueError, match="not the NMS-free head"):
        build_detector_graph(networks(VARIANTS["yolov11_nano"]), VARIANTS["yolov26_nano"], "onnx")
