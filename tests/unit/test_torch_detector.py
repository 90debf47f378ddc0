"""One meaning of "the detections": the PyTorch detector (yolo_triton/torch_detector.py: Ultralytics'
network, then NMS and the box mapping in PyTorch, what the pytorch-gpu target serves) gives what the
ONNX detector graph (create_onnx.py) gives, on the 130 photos, for every kind of variant: best class
(YOLO11), multi-label evaluation settings, YOLO26's NMS-free head, and rect letterboxes. Both in FP32
on the CPU, from the same letterboxed pixels; the GPU's FP16 is measured on the GPU (benchmarks/RESULTS.md)."""

from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import weights_of
from matching import Detections, unpaired

from yolo_triton.contract import VARIANTS
from yolo_triton.export.create_onnx import create_onnx
from yolo_triton.models_file import inspect_weights
from yolo_triton.preprocessing import CpuPreprocessor
from yolo_triton.torch_detector import Detector

# Two runtimes' FP32 convolutions differ in their last bits: scores agree to 1e-3, boxes to 0.05 px
SCORE_ATOL, BOX_ATOL = 1e-3, 5e-2
KINDS = {
    "best class": ("yolov11_nano", {}),
    "multi-label (eval)": ("yolov11_nano_eval", {}),
    "NMS-free (YOLO26)": ("yolov26_nano", {}),
    "rect": ("yolov8_nano", {"rect": True}),
}


@pytest.mark.parametrize("kind", KINDS)
def test_pytorch_detector_gives_what_the_onnx_graph_gives(kind, test_images, tmp_path):
    name, changes = KINDS[kind]
    v = inspect_weights(replace(VARIANTS[name], weights=str(weights_of(name)), **changes), "test")
    graph = ort.InferenceSession(
        str(create_onnx(v.weights, v, "onnx", tmp_path / "model.onnx")), providers=["CPUExecutionProvider"]
    )
    detector = Detector(v.weights, v, torch.device("cpu"), "fp32")
    preprocessor = CpuPreprocessor(v.imgsz, v.rect)
    # square: 10 photos a batch (the whole-batch NMS keeps images apart); rect: one shape a batch
    step = 1 if v.rect else 10
    differing, total = [], 0
    for start in range(0, len(test_images), step):
        paths = test_images[start : start + step]
        images, letterbox = preprocessor.letterbox(preprocessor.decode([p.read_bytes() for p in paths]))
        expected = graph.run(None, {"images": images, "letterbox": letterbox})
        found = detector(torch.from_numpy(images), torch.from_numpy(letterbox))
        ours = [x.numpy() for x in (found.num_dets, found.det_boxes, found.det_scores, found.det_classes)]
        for i, path in enumerate(paths):
            a = Detections.from_outputs(*(o[i] for o in expected))
            b = Detections.from_outputs(*(o[i] for o in ours))
            total += len(a.scores)
            if unpaired(a, b, SCORE_ATOL, BOX_ATOL):
                differing.append(path.name)
            # the contract's padding rows
            n = int(ours[0][i, 0])
            assert np.all(ours[2][i, n:] == 0) and np.all(ours[3][i, n:] == -1) and np.all(ours[1][i, n:] == 0)
    assert total > 500, f"{kind}: only {total} detections on the photos"
    assert differing == [], f"{kind}: PyTorch and the ONNX graph differ on {differing}"
