"""A reference of TensorRT's EfficientNMS_TRT plugin, written from its README (TensorRT
plugin/efficientNMSPlugin), and its binding into ONNX Runtime as a Python custom op.

TensorRT cannot be installed on these machines, so this stands in for the plugin, and only in
tests: the detector graph's EfficientNMS_TRT node is bound to it and the graph run in ONNX Runtime.

What the README documents, and this implements:
- boxes [B, N, 4] (box_coding 0: x1, y1, x2, y2; 1: cx, cy, w, h), scores [B, N, C];
  score_activation 1 applies a sigmoid to the scores first;
- candidates are the (box, class) pairs scoring above score_threshold, background_class
  excluded; at most the top MAX_CANDIDATES of them by score enter NMS;
- greedy NMS in score order: a candidate is dropped when its IoU with an already kept box of the
  same class (any class with class_agnostic) is above iou_threshold;
- outputs num_detections [B, 1] int32, detection_boxes [B, K, 4] (always x1, y1, x2, y2),
  detection_scores [B, K], detection_classes [B, K] int32, sorted by score, zero padded.
"""

from __future__ import annotations

import numpy as np
import onnx

from yolo_triton.boxes import box_iou

MAX_CANDIDATES = 4096


def efficient_nms(
    boxes,
    scores,
    *,
    score_threshold: float,
    iou_threshold: float,
    max_output_boxes: int,
    background_class: int = -1,
    score_activation: int = 0,
    box_coding: int = 0,
    class_agnostic: int = 0,
):
    boxes, scores = np.asarray(boxes, np.float32), np.asarray(scores, np.float32)
    if score_activation:
        scores = 1 / (1 + np.exp(-scores))
    if box_coding == 1:
        xy, half = boxes[..., :2], boxes[..., 2:] / 2
        boxes = np.concatenate([xy - half, xy + half], -1)
    batch, _, classes = scores.shape
    k = max_output_boxes
    num = np.zeros((batch, 1), np.int32)
    out_boxes, out_scores, out_classes = (
        np.zeros((batch, k, 4), np.float32),
        np.zeros((batch, k), np.float32),
        np.zeros((batch, k), np.int32),
    )
    for b in range(batch):
        anchor, cls = np.nonzero(scores[b] > score_threshold)
        if 0 <= background_class < classes:
            anchor, cls = anchor[cls != background_class], cls[cls != background_class]
        s = scores[b, anchor, cls]
        order = np.argsort(-s, kind="stable")[:MAX_CANDIDATES]
        kept: list[int] = []
        for i in order:
            if len(kept) == k:
                break
            same = [j for j in kept if class_agnostic or cls[j] == cls[i]]
            if same and (box_iou(boxes[b, anchor[i]], boxes[b, anchor[same]])[0] > iou_threshold).any():
                continue
            kept.append(i)
        n = len(kept)
        num[b, 0] = n
        out_boxes[b, :n], out_scores[b, :n], out_classes[b, :n] = boxes[b, anchor[kept]], s[kept], cls[kept]
    return num, out_boxes, out_scores, out_classes


_bound = False


def bind_to_onnxruntime(model):
    """Point the model's EfficientNMS_TRT node(s) at the reference (ONNX Runtime extensions'
    Python custom ops live in their own domain); return the session options that load them."""
    global _bound
    import onnxruntime as ort
    from onnxruntime_extensions import PyCustomOpDef, default_opset_domain, get_library_path, onnx_op

    if not _bound:
        attrs = {
            "score_threshold": PyCustomOpDef.dt_float,
            "iou_threshold": PyCustomOpDef.dt_float,
            "max_output_boxes": PyCustomOpDef.dt_int64,
            "background_class": PyCustomOpDef.dt_int64,
            "score_activation": PyCustomOpDef.dt_int64,
            "box_coding": PyCustomOpDef.dt_int64,
            "class_agnostic": PyCustomOpDef.dt_int64,
            "plugin_version": PyCustomOpDef.dt_string,
        }

        @onnx_op(
            op_type="EfficientNMS_TRT",
            inputs=[PyCustomOpDef.dt_float, PyCustomOpDef.dt_float],
            outputs=[PyCustomOpDef.dt_int32, PyCustomOpDef.dt_float, PyCustomOpDef.dt_float, PyCustomOpDef.dt_int32],
            attrs=attrs,
        )
        def _efficient_nms(boxes, scores, plugin_version="1", **kwargs):
            assert plugin_version == "1"
            return efficient_nms(boxes, scores, **kwargs)

        _bound = True
    for node in model.graph.node:
        if node.op_type == "EfficientNMS_TRT":
            node.domain = default_opset_domain()
    kept = [o for o in model.opset_import if o.domain != "TRT"]
    del model.opset_import[:]
    model.opset_import.extend([*kept, onnx.helper.make_opsetid(default_opset_domain(), 1)])
    options = ort.SessionOptions()
    options.register_custom_ops_library(get_library_path())
    return options
