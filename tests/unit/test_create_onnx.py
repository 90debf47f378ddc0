"""Both NMS flavours come from one code path; the TensorRT flavour carries EfficientNMS_TRT with the
variant's attributes. (TensorRT is not installable here: its issue adds the semantic tests of this
node against a reference implementation; this file checks the structure.)"""

import onnx
import pytest

from yolo_triton.contract import VARIANTS
from yolo_triton.export.create_onnx import PLUGIN_DOMAIN, build_detector_graph, export_network

from conftest import weights_of


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    return onnx.load(export_network(weights_of("yolov11_nano"), VARIANTS["yolov11_nano"], tmp_path_factory.mktemp("export")))


@pytest.fixture(scope="module")
def graphs(network):
    v = VARIANTS["yolov11_nano"]
    return {nms: build_detector_graph(network, v, nms) for nms in ("onnx", "efficient_nms")}


def test_efficient_nms_node_and_attributes(graphs):
    v = VARIANTS["yolov11_nano"]
    nodes = [n for n in graphs["efficient_nms"].graph.node if n.op_type == "EfficientNMS_TRT"]
    assert len(nodes) == 1 and nodes[0].domain == PLUGIN_DOMAIN
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs == {"plugin_version": b"1", "background_class": -1, "box_coding": 0, "iou_threshold": pytest.approx(v.iou),
                     "max_output_boxes": v.max_detections, "score_activation": 0, "score_threshold": pytest.approx(v.conf),
                     "class_agnostic": 0}
    assert not any(n.op_type == "NonMaxSuppression" for n in graphs["efficient_nms"].graph.node)
    opsets = {o.domain: o.version for o in graphs["efficient_nms"].opset_import}
    assert opsets == {"": 17, PLUGIN_DOMAIN: 1}


def test_flavours_share_inputs_outputs_and_everything_outside_nms(graphs):
    onnx_graph, trt_graph = graphs["onnx"].graph, graphs["efficient_nms"].graph
    assert onnx_graph.input == trt_graph.input and onnx_graph.output == trt_graph.output
    # the network and the box mapping are the same nodes in both
    ops = lambda g: sorted(n.op_type for n in g.node)
    common = set(ops(onnx_graph)) & set(ops(trt_graph))
    assert {"Cast", "Div", "Conv", "ArgMax", "Equal", "Where", "Less", "Min", "Max"} <= common


def test_unknown_flavour_is_refused(network):
    with pytest.raises(ValueError, match="nms must be one of"):
        build_detector_graph(network, VARIANTS["yolov11_nano"], "fast")
