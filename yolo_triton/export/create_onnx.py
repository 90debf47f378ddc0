"""Stage 1 of export: Ultralytics .pt -> the detector's ONNX graph, NMS and box mapping inside.

Ultralytics exports the network (`output0`: [B, 4 + classes, anchors], boxes as cx, cy, w, h in
letterboxed pixels). This script wraps that graph with onnx-graphsurgeon, in the manner of
TensorRT's detectron2 sample:

    images    UINT8 [B, 3, S, S]  (letterboxed RGB) -> Cast, /255 -> the network
    letterbox FP32  [B, 6]        (pad_x, pad_y, scale_x, scale_y, width, height per image)
    network -> cx,cy,w,h -> x1,y1,x2,y2; each anchor keeps only its best class (as Ultralytics'
    predict; `*_eval` variants keep every class above conf, as its val: multi_label) -> NMS per
    class -> top K -> (box - pad) / scale, clipped to the image
    -> num_dets INT32 [B,1], det_boxes FP32 [B,K,4], det_scores FP32 [B,K], det_classes INT32 [B,K]

Two NMS flavours, one code path around them:
  onnx          the standard NonMaxSuppression op (ONNX Runtime on CPU or GPU, or TensorRT's
                INMSLayer); per class as one group, boxes offset by class (see _onnx_nms)
  efficient_nms TensorRT's EfficientNMS_TRT plugin (deprecated since TensorRT 10.12, still shipped)

Precision fp32 or fp16 (the network's weights and arithmetic; UINT8 in, NMS and box mapping FP32).
TensorRT builds the graph strongly typed: the precision is the graph's (build_engine.py).

    python -m yolo_triton.export.create_onnx --weights yolo11n.pt --variant yolov11_nano --nms onnx \
        [--precision fp16] -o model.onnx
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from yolo_triton.contract import CLASS_OFFSET, LETTERBOX_PARAMS, VARIANTS, Variant, letterboxed_images

NMS_FLAVOURS = ("onnx", "efficient_nms")
PRECISIONS = ("fp32", "fp16")  # of the network; NMS and box mapping are FP32 in both
OPSET = 17  # parsed by TensorRT 8.6+ and ONNX Runtime alike
IR_VERSION = 8  # the IR of opset 17; newer onnx packages write IRs that older runtimes refuse
# TensorRT's parser finds a plugin by op type whatever the domain; a domain of its own keeps the
# node apart from the standard ops for onnx.checker and ONNX Runtime custom-op bindings.
PLUGIN_DOMAIN = "TRT"
# names of the nodes mapping boxes to original pixels (FP32 in both precisions; the tests check)
BOX_MAPPING_SCOPE = "box_mapping/"


def export_network(weights: str | Path, variant: Variant, workdir: Path) -> onnx.ModelProto:
    """The network as Ultralytics exports it for ONNX/TensorRT (dynamic batch), at the variant's
    fixed imgsz x imgsz, slimmed. Its output0 is [B, 4 + classes, anchors], or for an NMS-free
    variant the one-to-one head's top detections [B, 300, 6]: x1, y1, x2, y2, score, class."""
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no update or hub checks during export
    import onnxslim
    from ultralytics import YOLO

    local = workdir / Path(weights).name
    if Path(weights).exists():
        shutil.copy(weights, local)  # Ultralytics writes the .onnx beside its weights
    else:
        local = Path(weights)  # a bare name such as yolo11n.pt: Ultralytics downloads it
    # nms=False selects the one-to-one head of YOLO26; None (Ultralytics' default) the usual one
    nms = False if variant.nms_free else None
    path = YOLO(str(local)).export(
        format="onnx", imgsz=variant.imgsz, dynamic=True, simplify=True, opset=OPSET, nms=nms
    )
    model = onnx.load(path)
    # A square variant only ever sees imgsz x imgsz: fixing it lets every shape computation fold
    # away, so TensorRT gets a graph static but for the batch (output0 [B, 84, 8400], not symbolic).
    # A rect variant keeps the height and width free (anchors made from the feature maps' shapes).
    for dim, name in zip(model.graph.input[0].type.tensor_type.shape.dim[2:], ("height", "width")):
        if variant.rect:
            dim.dim_param = name
        else:
            dim.ClearField("dim_param")
            dim.dim_value = variant.imgsz
    return onnxslim.slim(model)


class _Builder:
    """Adds nodes to a graphsurgeon graph with unique tensor names."""

    def __init__(self, graph: gs.Graph):
        self.graph = graph
        self.count = 0
        self.scope = ""  # prefix of the names of the nodes added

    def op(self, op: str, inputs: list, outputs: int = 1, domain: str | None = None, **attrs) -> gs.Variable | list:
        self.count += 1
        outs = [gs.Variable(f"{op.lower()}_{self.count}_{i}") for i in range(outputs)]
        node = gs.Node(op, f"{self.scope}{op}_{self.count}", attrs=attrs, inputs=inputs, outputs=outs, domain=domain)
        self.graph.nodes.append(node)
        return outs[0] if outputs == 1 else outs

    def const(self, name: str, value) -> gs.Constant:
        return gs.Constant(name, np.asarray(value))

    def slice(self, x, start: int, end: int, axis: int):
        return self.op(
            "Slice",
            [
                x,
                self.const(f"s{start}_{end}_{axis}_{self.count}", [start]),
                self.const(f"e{start}_{end}_{axis}_{self.count}", [end]),
                self.const(f"a{start}_{end}_{axis}_{self.count}", [axis]),
            ],
        )


def _decode_head(b: _Builder, v: Variant, output0: gs.Variable):
    """[B, 4+C, N] -> boxes x1y1x2y2 [B,N,4], the candidates' scores [B,N,C] (every class for
    multi_label, else each anchor's best class only, the rest 0), best score [B,N], best class
    [B,N] (int64)."""
    rows = b.op("Transpose", [output0], perm=[0, 2, 1])  # [B, N, 4+C]
    xywh = b.slice(rows, 0, 4, axis=2)
    scores = b.slice(rows, 4, 4 + v.num_classes, axis=2)
    xy, wh = b.slice(xywh, 0, 2, axis=2), b.slice(xywh, 2, 4, axis=2)
    half = b.op("Div", [wh, b.const("two", np.float32(2))])
    boxes = b.op("Concat", [b.op("Sub", [xy, half]), b.op("Add", [xy, half])], axis=2)
    best = b.op("ReduceMax", [scores], axes=[2], keepdims=1)  # [B, N, 1]
    best_class = b.op("ArgMax", [scores], axis=2, keepdims=1)  # first index on ties, as torch.max
    if v.multi_label:
        candidates = scores
    else:
        is_best = b.op("Equal", [best_class, b.const("class_ids", np.arange(v.num_classes, dtype=np.int64))])
        candidates = b.op("Where", [is_best, scores, b.const("zero", np.float32(0))])  # [B, N, C]
    axis2 = b.const("axis2", np.array([2], dtype=np.int64))
    return boxes, candidates, b.op("Squeeze", [best, axis2]), b.op("Squeeze", [best_class, axis2])


def _onnx_nms(b: _Builder, v: Variant, boxes, candidates, best, best_class):
    """Standard NonMaxSuppression, then the top K of each image, as EfficientNMS_TRT returns them.

    Best-class variants (and class-agnostic ones) run NMS as one group, scores [B, 1, N]: ONNX
    Runtime's CUDA kernel loops over batch x group on the host, so 80 groups cost 80 round trips
    per image. Multi-label (eval) variants keep one group per class, scores [B, C, N]: an anchor may
    be a candidate in several classes, which one group of N boxes cannot hold."""
    if v.multi_label and not v.class_agnostic:
        return _per_class_nms(b, v, boxes, candidates)
    nms_boxes = boxes
    if not v.class_agnostic:
        offset = b.op(
            "Mul",
            [b.op("Cast", [best_class], to=onnx.TensorProto.FLOAT), b.const("class_offset", np.float32(CLASS_OFFSET))],
        )
        nms_boxes = b.op(
            "Add", [boxes, b.op("Unsqueeze", [offset, b.const("axis2_offset", np.array([2], dtype=np.int64))])]
        )
    nms_scores = b.op("Unsqueeze", [best, b.const("axis1", np.array([1], dtype=np.int64))])  # [B, 1, N]
    selected = _nms_node(b, v, nms_boxes, nms_scores)  # [M, 3]: (batch, 0, anchor)
    batch_anchor = b.op("Gather", [selected, b.const("batch_anchor_cols", np.array([0, 2], dtype=np.int64))], axis=1)
    kept_scores = b.op("GatherND", [best, batch_anchor])  # [M]
    # Scatter the survivors into a dense [B, N] map (each anchor once), then take each image's top K
    zeros = b.op("ConstantOfShape", [b.op("Shape", [best])], value=_ZERO)
    top_scores, top_anchor = _top_k(b, v, b.op("ScatterND", [zeros, batch_anchor, kept_scores]))
    if v.rect:  # a padding column's index, past the anchors (its score is 0: a row past num)
        top_anchor = b.op(
            "Min",
            [
                top_anchor,
                b.op("Sub", [b.op("Shape", [best], start=1, end=2), b.const("one_i", np.array([1], dtype=np.int64))]),
            ],
        )
    top_class = b.op("GatherElements", [best_class, top_anchor], axis=1)
    return _top_detections(b, boxes, top_scores, top_anchor, top_class)


def _per_class_nms(b: _Builder, v: Variant, boxes, candidates):
    """One NMS group per class: every (anchor, class) pair above conf is a candidate."""
    by_class = b.op("Transpose", [candidates], perm=[0, 2, 1])  # [B, C, N]
    selected = _nms_node(b, v, boxes, by_class)  # [M, 3]: (batch, class, anchor)
    kept_scores = b.op("GatherND", [by_class, selected])  # [M]
    # Scatter the survivors into a dense [B, C*N] map, then take each image's top K: sorted by
    # score, like EfficientNMS_TRT; the flat index is class * N + anchor.
    zeros = b.op("ConstantOfShape", [b.op("Shape", [by_class])], value=_ZERO)
    dense = b.op(
        "Reshape",
        [b.op("ScatterND", [zeros, selected, kept_scores]), b.const("flat", np.array([0, -1], dtype=np.int64))],
    )
    top_scores, top_index = _top_k(b, v, dense)
    anchors = b.op("Shape", [boxes], start=1, end=2)  # N
    return _top_detections(b, boxes, top_scores, b.op("Mod", [top_index, anchors]), b.op("Div", [top_index, anchors]))


_ZERO = onnx.helper.make_tensor("z", onnx.TensorProto.FLOAT, [1], [0.0])


def _top_k(b: _Builder, v: Variant, dense):
    """Each image's K best of a [B, M] score map: scores [B, K] (0 past the detections), indices."""
    return b.op(
        "TopK",
        [_at_least_k(b, v, dense), b.const("k", np.array([v.max_detections], dtype=np.int64))],
        outputs=2,
        axis=1,
    )


def _at_least_k(b: _Builder, v: Variant, dense):
    """A rect variant's [B, M] score map with K zero columns appended: a small input (32 x 640 has
    420 anchors) may have fewer than K, which TopK refuses."""
    if not v.rect:
        return dense
    zeros = b.op(
        "ConstantOfShape",
        [
            b.op(
                "Concat",
                [
                    b.op("Shape", [dense], start=0, end=1),
                    b.const("k_cols", np.array([v.max_detections], dtype=np.int64)),
                ],
                axis=0,
            )
        ],
        value=_ZERO,
    )
    return b.op("Concat", [dense, zeros], axis=1)


def _nms_node(b: _Builder, v: Variant, boxes, scores):
    return b.op(
        "NonMaxSuppression",
        [
            boxes,
            scores,
            b.const("max_output_boxes_per_class", np.array([v.max_detections], dtype=np.int64)),
            b.const("iou_threshold", np.array([v.iou], dtype=np.float32)),
            b.const("score_threshold", np.array([v.conf], dtype=np.float32)),
        ],
        center_point_box=0,
    )


def _top_detections(b: _Builder, boxes, top_scores, top_anchor, top_class):
    """num [B, 1] (scores above 0), boxes [B, K, 4], scores [B, K], classes INT32 [B, K]."""
    num = b.op(
        "ReduceSum",
        [
            b.op("Cast", [b.op("Greater", [top_scores, b.const("zero_f", np.float32(0))])], to=onnx.TensorProto.INT32),
            b.const("axis1_sum", np.array([1], dtype=np.int64)),
        ],
        keepdims=1,
    )  # [B, 1]
    anchor_idx = b.op("Unsqueeze", [top_anchor, b.const("axis2_idx", np.array([2], dtype=np.int64))])  # [B, K, 1]
    top_boxes = b.op("GatherND", [boxes, anchor_idx], batch_dims=1)  # [B, K, 4]
    return num, top_boxes, top_scores, b.op("Cast", [top_class], to=onnx.TensorProto.INT32)


def _efficient_nms(b: _Builder, v: Variant, boxes, candidates, best, best_class):
    """TensorRT's EfficientNMS_TRT plugin (see its README for the attributes)."""
    return b.op(
        "EfficientNMS_TRT",
        [boxes, candidates],
        outputs=4,
        domain=PLUGIN_DOMAIN,
        plugin_version="1",
        background_class=-1,  # every class is a real class
        box_coding=0,  # boxes already x1, y1, x2, y2
        iou_threshold=float(v.iou),
        max_output_boxes=int(v.max_detections),
        score_activation=0,  # scores are sigmoid outputs already
        score_threshold=float(v.conf),
        class_agnostic=int(v.class_agnostic),
    )


_NMS = {"onnx": _onnx_nms, "efficient_nms": _efficient_nms}


def _one_to_one(b: _Builder, v: Variant, output0: gs.Variable):
    """YOLO26's NMS-free head gives its top detections, [B, 300, 6]; keep those above conf, top K
    by score (Ultralytics' end-to-end predict: `score > conf`, first max_det)."""
    boxes = b.slice(output0, 0, 4, axis=2)
    scores = b.op("Squeeze", [b.slice(output0, 4, 5, axis=2), b.const("axis2_score", np.array([2], dtype=np.int64))])
    classes = b.op("Squeeze", [b.slice(output0, 5, 6, axis=2), b.const("axis2_class", np.array([2], dtype=np.int64))])
    above = b.op("Greater", [scores, b.const("conf", np.float32(v.conf))])
    top_scores, top = _top_k(b, v, b.op("Where", [above, scores, b.const("zero_kept", np.float32(0))]))
    return _top_detections(b, boxes, top_scores, top, b.op("GatherElements", [classes, top], axis=1))


def _to_original_pixels(b: _Builder, v: Variant, letterbox, num, boxes, scores, classes):
    """(box - pad) / scale, clipped to the image; rows past num zeroed (classes -1)."""
    b.scope = BOX_MAPPING_SCOPE

    def per_box(start):  # [B, 2] -> [B, 1, 4] as (x, y, x, y)
        pair = b.slice(letterbox, start, start + 2, axis=1)
        return b.op(
            "Unsqueeze",
            [b.op("Concat", [pair, pair], axis=1), b.const(f"axis1_{start}", np.array([1], dtype=np.int64))],
        )

    pad, scale, size = per_box(0), per_box(2), per_box(4)
    mapped = b.op("Div", [b.op("Sub", [boxes, pad]), scale])
    clipped = b.op("Min", [b.op("Max", [mapped, b.const("zero_box", np.float32(0))]), size])
    rows = b.const("row_ids", np.arange(v.max_detections, dtype=np.int32)[None, :])  # [1, K]
    valid = b.op("Less", [rows, num])  # [B, K]
    valid3 = b.op("Unsqueeze", [valid, b.const("axis2_valid", np.array([2], dtype=np.int64))])
    return (
        b.op("Identity", [num]),
        b.op("Where", [valid3, clipped, b.const("zero_pad", np.float32(0))]),
        b.op("Where", [valid, scores, b.const("zero_score", np.float32(0))]),
        b.op("Where", [valid, classes, b.const("no_class", np.int32(-1))]),
    )


def network_in_fp16(network: onnx.ModelProto) -> onnx.ModelProto:
    """The network with FP16 weights and arithmetic, FP32 in and out (keep_io_types), so the
    normalisation before it and the NMS and box mapping after it stay FP32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(network, keep_io_types=True)


def build_detector_graph(
    network: onnx.ModelProto, variant: Variant, nms: str, precision: str = "fp32"
) -> onnx.ModelProto:
    """Wrap Ultralytics' network graph into the detector graph of the contract; precision "fp16"
    runs the network (not the NMS or the box mapping) in FP16."""
    if nms not in _NMS:
        raise ValueError(f"nms must be one of {NMS_FLAVOURS}, not {nms!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    graph = gs.import_onnx(network_in_fp16(network) if precision == "fp16" else network)
    b = _Builder(graph)
    net_in, output0 = graph.inputs[0], graph.outputs[0]
    expected_rows = (None, 6) if variant.nms_free else (4 + variant.num_classes, None)
    if any(e is not None and e != got for e, got in zip(expected_rows, output0.shape[1:])):
        raise ValueError(
            f"output0 {output0.shape} is not the {'NMS-free' if variant.nms_free else 'detection'} head "
            f"of {variant.name}"
        )

    img_spec = letterboxed_images(variant.imgsz, variant.rect)
    image_shape = ["batch", *(d if d > 0 else name for d, name in zip(img_spec.dims, ("channels", "height", "width")))]
    images = gs.Variable(img_spec.name, dtype=np.uint8, shape=image_shape)
    letterbox = gs.Variable(LETTERBOX_PARAMS.name, dtype=np.float32, shape=["batch", *LETTERBOX_PARAMS.dims])
    # the network's float input becomes an inner tensor: uint8 -> float -> /255 (as Ultralytics does)
    net_in.name, net_in.shape = "normalized_images", image_shape
    scaled = b.op("Cast", [images], to=onnx.TensorProto.FLOAT)
    graph.nodes.append(gs.Node("Div", "Normalize", inputs=[scaled, b.const("255", np.float32(255))], outputs=[net_in]))

    if variant.nms_free:  # the same graph for both flavours: no NMS at all
        detections = _one_to_one(b, variant, output0)
    else:
        detections = _NMS[nms](b, variant, *_decode_head(b, variant, output0))
    results = _to_original_pixels(b, variant, letterbox, *detections)

    graph.inputs = [images, letterbox]
    graph.outputs = []
    for tensor, spec in zip(results, variant.outputs):
        tensor.name, tensor.dtype, tensor.shape = spec.name, spec.numpy_dtype, ["batch", *spec.dims]
        graph.outputs.append(tensor)
    graph.cleanup().toposort()
    model = gs.export_onnx(graph)
    model.ir_version = IR_VERSION
    del model.opset_import[:]
    model.opset_import.append(onnx.helper.make_opsetid("", OPSET))
    if nms == "efficient_nms":
        model.opset_import.append(onnx.helper.make_opsetid(PLUGIN_DOMAIN, 1))
    return model


def create_onnx(weights: str | Path, variant: Variant, nms: str, output: str | Path, precision: str = "fp32") -> Path:
    """Export `weights` with Ultralytics and write the detector graph of `variant` to `output`."""
    output = Path(output)
    with tempfile.TemporaryDirectory() as tmp:
        network = export_network(weights, variant, Path(tmp))
    model = build_detector_graph(network, variant, nms, precision)
    onnx.checker.check_model(model)
    output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, output)
    return output


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, help="Ultralytics .pt file (or a name Ultralytics can download)")
    parser.add_argument("--variant", required=True, choices=sorted(VARIANTS), help="row of the variant table")
    parser.add_argument("--nms", default="onnx", choices=NMS_FLAVOURS)
    parser.add_argument(
        "--precision", default="fp32", choices=PRECISIONS, help="of the network (NMS and box mapping: FP32)"
    )
    parser.add_argument("-o", "--output", required=True, help="where to write the .onnx")
    args = parser.parse_args()
    print(create_onnx(args.weights, VARIANTS[args.variant], args.nms, args.output, args.precision))


if __name__ == "__main__":
    main()
