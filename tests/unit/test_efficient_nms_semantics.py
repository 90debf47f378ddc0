"""The TensorRT graph's semantics, without TensorRT: its EfficientNMS_TRT node bound to a reference
of the plugin's documented behaviour (tests/efficient_nms_reference.py, a stand-in because
TensorRT cannot be installed here), the graph run in ONNX Runtime gives the same detections as the
CPU graph (standard NonMaxSuppression) and as Ultralytics' predict, on the shared images.

"The same detections" is matching.unpaired: the same set, paired by class, score and box within
float tolerances, in any order (two equal scores may come out in either order; see matching.py)."""

from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
from conftest import MATCH_REPORT, WEIGHTS_DIR
from efficient_nms_reference import bind_to_onnxruntime, efficient_nms
from matching import Detections, MatchCounts, letterboxed_alike, unpaired

from yolo_triton.contract import VARIANTS
from yolo_triton.export.create_onnx import build_detector_graph, export_network
from yolo_triton.preprocessing import decode, letterbox_into


def _letterboxed(paths):
    images = np.empty((len(paths), 3, 640, 640), np.uint8)
    params = np.stack([letterbox_into(images[i], decode(p.read_bytes())) for i, p in enumerate(paths)])
    return {"images": images, "letterbox": params}


def _sessions(variant, tmp_path):
    network = export_network(WEIGHTS_DIR / variant.weights, variant, tmp_path)
    trt_graph = build_detector_graph(network, variant, "efficient_nms")
    options = bind_to_onnxruntime(trt_graph)
    return (
        ort.InferenceSession(trt_graph.SerializeToString(), options, providers=["CPUExecutionProvider"]),
        ort.InferenceSession(
            build_detector_graph(network, variant, "onnx").SerializeToString(), providers=["CPUExecutionProvider"]
        ),
    )


def test_reference_on_a_hand_made_case():
    boxes = np.array([[[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]]], np.float32)
    scores = np.zeros((1, 4, 3), np.float32)
    scores[0, 0, 0], scores[0, 1, 0], scores[0, 2, 1], scores[0, 3, 2] = (
        0.9,
        0.8,
        0.7,
        0.6,
    )  # box 1 overlaps box 0 (IoU 0.68)
    num, b, s, c = efficient_nms(boxes, scores, score_threshold=0.25, iou_threshold=0.45, max_output_boxes=5)
    assert num.tolist() == [[3]] and c[0, :3].tolist() == [0, 1, 2] and np.allclose(s[0, :3], [0.9, 0.7, 0.6])
    assert (b[0, 3:] == 0).all() and (s[0, 3:] == 0).all()
    num, *_ = efficient_nms(
        boxes, scores, score_threshold=0.25, iou_threshold=0.45, max_output_boxes=5, class_agnostic=1
    )
    assert num.tolist() == [[2]]  # box 3 (class 2) now suppressed by box 0
    num, *_ = efficient_nms(boxes, scores, score_threshold=0.25, iou_threshold=0.7, max_output_boxes=2)
    assert num.tolist() == [[2]]  # K caps the output
    cxcywh = np.array([[[5, 5, 10, 10]]], np.float32)
    _, b, _, _ = efficient_nms(
        cxcywh,
        np.full((1, 1, 1), 3.0, np.float32),
        score_threshold=0.5,
        iou_threshold=0.5,
        max_output_boxes=1,
        box_coding=1,
        score_activation=1,
    )
    assert b[0, 0].tolist() == [0, 0, 10, 10]


AGNOSTIC = replace(VARIANTS["yolov8_nano"], name="yolov8_nano_agnostic", class_agnostic=True)
# the variants with NMS (YOLO26's two flavours are the same graph: test_create_onnx.py), the eval
# settings once (K 300, conf 0.001: the most candidates), and class-agnostic NMS
WITH_NMS = [
    v for v in VARIANTS.values() if not v.nms_free and (not v.name.endswith("_eval") or v.name == "yolov11_nano_eval")
]


def _ultralytics(variant, paths, reference):
    if variant.name in VARIANTS:
        return reference(variant.name, paths)  # shared with the served-ensemble tests
    from ultralytics import YOLO

    model = YOLO(str(WEIGHTS_DIR / variant.weights))
    return {p: Detections.from_ultralytics(model.predict(str(p), **variant.predict_arguments)[0]) for p in paths}


@pytest.mark.parametrize("variant", [*WITH_NMS, AGNOSTIC], ids=lambda v: v.name)
def test_efficient_nms_graph_equals_onnx_graph_and_ultralytics(variant, test_images, tmp_path, reference):
    trt_like, cpu = _sessions(variant, tmp_path)
    expected = _ultralytics(variant, test_images, reference)
    counts, differing = MatchCounts(), 0
    # multi-label: the reference is val's detections, comparable on the images val letterboxes as predict
    compared = set(letterboxed_alike(test_images, variant.imgsz) if variant.multi_label else test_images)
    for start in range(0, len(test_images), 10):
        paths = test_images[start : start + 10]
        feed = _letterboxed(paths)
        got, want = trt_like.run(None, feed), cpu.run(None, feed)
        for i, path in enumerate(paths):
            ours = Detections.from_outputs(*(o[i] for o in got))
            same = Detections.from_outputs(*(o[i] for o in want))
            differing += unpaired(ours, same) > 0
            if path in compared:
                counts.add(path.name, expected[path], ours)
    MATCH_REPORT.append(
        f"{variant.name:18s} EfficientNMS graph (reference plugin, ONNX Runtime): {counts}; "
        f"{differing} of {len(test_images)} images differ from the ONNX-NMS graph"
    )
    assert differing == 0
    assert counts.matched_fraction >= 0.99 and counts.extra_fraction <= 0.01, str(counts)
