"""The ONNX graph the GPU runs, on the CPU: one-group NMS (boxes offset by class) gives the same
detections as one NMS group per class on all 130 test images, and the FP16 graph (network in FP16,
NMS and box mapping in FP32) matches Ultralytics' predict by the rule of the other accuracy tests.

"The same detections" is matching.unpaired: the same set, paired by class, score and box within
float tolerances, in any order. (On the CPU, ONNX Runtime runs most FP16 layers through casts to
FP32, so this proves the graph, not the FP16 arithmetic of a GPU: benchmarks/RESULTS.md has that.)"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import MATCH_REPORT, WEIGHTS_DIR
from matching import Detections, MatchCounts, unpaired

from yolo_triton.contract import VARIANTS
from yolo_triton.export import create_onnx
from yolo_triton.preprocessing import decode, letterbox_into

V = VARIANTS["yolov11_nano"]


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    return create_onnx.export_network(WEIGHTS_DIR / V.weights, V, tmp_path_factory.mktemp("export"))


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _per_class_graph(network, monkeypatch):
    """The same graph with one NMS group per class (scores [B, 80, N]), as it was before one group."""
    with monkeypatch.context() as m:
        m.setitem(
            create_onnx._NMS,
            "onnx",
            lambda b, v, boxes, candidates, best, best_class: create_onnx._per_class_nms(b, v, boxes, candidates),
        )
        return create_onnx.build_detector_graph(network, V, "onnx")


def _detections(sessions, paths):
    """Per session, per image: Detections, the photos letterboxed as the server does, 10 at a time."""
    found = [[] for _ in sessions]
    for start in range(0, len(paths), 10):
        chunk = paths[start : start + 10]
        images = np.empty((len(chunk), 3, V.imgsz, V.imgsz), np.uint8)
        params = np.stack([letterbox_into(images[i], decode(p.read_bytes())) for i, p in enumerate(chunk)])
        for out, session in zip(found, sessions):
            outputs = session.run(None, {"images": images, "letterbox": params})
            out.extend(Detections.from_outputs(*(o[i] for o in outputs)) for i in range(len(chunk)))
    return found


def _nms_scores_shape(model):
    inferred = onnx.shape_inference.infer_shapes(model)
    infos = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.input)}
    (nms,) = [n for n in model.graph.node if n.op_type == "NonMaxSuppression"]
    return [d.dim_param or d.dim_value for d in infos[nms.input[1]].type.tensor_type.shape.dim]


def test_one_group_equals_per_class_and_fp16_matches_ultralytics(network, monkeypatch, test_images, reference):
    one_group = create_onnx.build_detector_graph(network, V, "onnx")
    per_class = _per_class_graph(network, monkeypatch)
    fp16 = create_onnx.build_detector_graph(network, V, "onnx", "fp16")
    assert _nms_scores_shape(one_group) == _nms_scores_shape(fp16) == ["batch", 1, 8400]
    assert _nms_scores_shape(per_class) == ["batch", V.num_classes, 8400]

    ours, theirs, half = _detections([_session(g) for g in (one_group, per_class, fp16)], test_images)
    differing = [p.name for p, a, b in zip(test_images, ours, theirs) if unpaired(a, b)]
    assert sum(len(d.scores) for d in ours) > 700
    assert differing == [], f"one-group NMS differs from per-class NMS on {differing}"

    expected = reference(V.name, test_images)
    counts = MatchCounts()
    for path, found in zip(test_images, half):
        counts.add(path.name, expected[path], found)
    MATCH_REPORT.append(f"{V.name:18s} FP16 graph (ONNX Runtime CPU): {counts}")
    assert counts.matched_fraction >= 0.99 and counts.extra_fraction <= 0.01, str(counts)


@pytest.mark.parametrize("nms", create_onnx.NMS_FLAVOURS)
def test_fp16_graph_types(network, nms):
    """FP16 weights and arithmetic in the network; UINT8 in, and the NMS, the box mapping and the
    outputs in FP32 (boxes in original pixels up to thousands: FP16 would be off by pixels)."""
    model = create_onnx.build_detector_graph(network, V, nms, "fp16")
    onnx.checker.check_model(model)
    inferred = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.value_info, *inferred.input, *inferred.output)}
    weights = [i.data_type for i in model.graph.initializer if len(i.dims) == 4]  # conv kernels
    assert weights and set(weights) == {onnx.TensorProto.FLOAT16}
    nms_op = "NonMaxSuppression" if nms == "onnx" else "EfficientNMS_TRT"
    (node,) = [n for n in model.graph.node if n.op_type == nms_op]
    assert {types[name] for name in node.input[:2]} == {onnx.TensorProto.FLOAT}
    mapping = [n for n in model.graph.node if n.name.startswith(create_onnx.BOX_MAPPING_SCOPE)]
    constants = {i.name: i.data_type for i in model.graph.initializer}
    assert mapping and onnx.TensorProto.FLOAT16 not in {constants.get(i) for n in mapping for i in n.input}
    assert not any(n.op_type == "Cast" for n in mapping)
    # past the plugin ONNX cannot infer types: there the plugin's FP32 inputs and the above suffice
    assert onnx.TensorProto.FLOAT16 not in {types.get(o) for n in mapping for o in n.output}
    fp32 = create_onnx.build_detector_graph(network, V, nms)
    assert model.graph.input == fp32.graph.input and model.graph.output == fp32.graph.output


def test_unknown_precision_is_refused(network):
    with pytest.raises(ValueError, match="precision must be one of"):
        create_onnx.build_detector_graph(network, V, "onnx", "int8")
