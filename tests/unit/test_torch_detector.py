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
from yolo_triton.torch_detector import (
    NMS_CANDIDATES,
    NMS_ROUNDS,
    Detector,
    first_output,
    load_network,
    pack,
    postprocess,
    postprocess_fixed,
    unpack,
)

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
        ours = detector(torch.from_numpy(images), torch.from_numpy(letterbox))
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


@pytest.mark.parametrize(
    "name, changes",
    [("yolov11_nano", {}), ("yolov11_nano", {"class_agnostic": True}), ("yolov26_nano", {})],
    ids=["best class", "class-agnostic", "NMS-free (YOLO26)"],
)
def test_fixed_shape_postprocessing_is_the_eager_one(name, changes, test_images):
    """postprocess_fixed (what the CUDA graphs hold) gives postprocess()'s detections on the photos'
    network outputs, and says that every photo's answer is exact."""
    v = inspect_weights(replace(VARIANTS[name], weights=str(weights_of(name)), **changes), "test")
    network = load_network(v.weights, v, torch.device("cpu"))
    preprocessor = CpuPreprocessor(v.imgsz)
    total = 0
    for start in range(0, len(test_images), 26):
        paths = test_images[start : start + 26]
        images, letterbox = preprocessor.letterbox(preprocessor.decode([p.read_bytes() for p in paths]))
        with torch.inference_mode():
            output0 = first_output(network(torch.from_numpy(images).float() / 255))
            letterbox = torch.from_numpy(letterbox)
            eager = unpack(pack(postprocess(output0, letterbox, v)).numpy(), v.max_detections)
            found, exact = postprocess_fixed(output0, letterbox, v)
        fixed = unpack(pack(found).numpy(), v.max_detections)
        assert exact.all()
        for i in range(len(paths)):
            a, b = (Detections.from_outputs(*(o[i] for o in outputs)) for outputs in (eager, fixed))
            total += len(a.scores)
            assert unpaired(a, b, 1e-6, 1e-4) == 0, paths[i].name
    assert total > 500


def _output0(boxes: list[tuple], scores: list[float], classes: list[int], v) -> torch.Tensor:
    """A network output [1, 4 + C, N] with these candidates (x1, y1, x2, y2) first, nothing after."""
    n = max(len(boxes), 8400)
    output0 = torch.zeros((1, 4 + v.num_classes, n))
    for j, ((x1, y1, x2, y2), score, c) in enumerate(zip(boxes, scores, classes)):
        output0[0, :4, j] = torch.tensor(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1))
        output0[0, 4 + c, j] = score
    return output0


def _both(output0: torch.Tensor, v):
    letterbox = torch.tensor([[0, 0, 1, 1, 640, 640]], dtype=torch.float32)
    eager = unpack(pack(postprocess(output0, letterbox, v)).numpy(), v.max_detections)
    found, exact = postprocess_fixed(output0, letterbox, v)
    return eager, unpack(pack(found).numpy(), v.max_detections), bool(exact[0])


def test_fixed_shape_nms_is_greedy_or_says_it_is_not():
    """The parallel suppression on random crowded boxes equals the greedy NMS whenever it says it is
    exact; a chain of suppressions longer than its rounds, or more candidates than it takes, is said
    to be inexact (the Detector then post-processes eagerly)."""
    v = replace(VARIANTS["yolov11_nano"], num_classes=3, max_detections=300)
    generator = torch.Generator().manual_seed(0)
    exact_seen = 0
    for _ in range(30):
        n = 200
        xy = torch.rand((n, 2), generator=generator) * 200
        wh = torch.rand((n, 2), generator=generator) * 60 + 5
        boxes = [tuple(b) for b in torch.cat((xy, xy + wh), 1).tolist()]
        scores = (torch.rand(n, generator=generator) * 0.7 + 0.26).tolist()
        classes = torch.randint(0, 3, (n,), generator=generator).tolist()
        eager, fixed, exact = _both(_output0(boxes, scores, classes, v), v)
        if exact:
            exact_seen += 1
            assert fixed[0][0, 0] == eager[0][0, 0]
            for a, b in zip(eager, fixed):
                np.testing.assert_array_equal(a, b)
    assert exact_seen >= 20
    # a chain: each box overlaps the next by IoU 7/13, the one after by 4/16; greedy keeps every other
    chain = [(3.0 * i, 0.0, 3.0 * i + 10, 10.0) for i in range(2 * NMS_ROUNDS + 2)]
    chain_scores = [0.9 - 0.01 * i for i in range(len(chain))]
    eager, fixed, exact = _both(_output0(chain, chain_scores, [0] * len(chain), v), v)
    assert not exact and eager[0][0, 0] == (len(chain) + 1) // 2
    short = chain[:NMS_ROUNDS]
    eager, fixed, exact = _both(_output0(short, chain_scores[: len(short)], [0] * len(short), v), v)
    assert exact and fixed[0][0, 0] == eager[0][0, 0] == (len(short) + 1) // 2
    # more candidates than NMS_CANDIDATES: apart from each other, all kept by the greedy NMS
    many = [
        (20.0 * (i % 30), 20.0 * (i // 30), 20.0 * (i % 30) + 10, 20.0 * (i // 30) + 10)
        for i in range(NMS_CANDIDATES + 1)
    ]
    eager, fixed, exact = _both(_output0(many, [0.5] * len(many), [0] * len(many), v), v)
    assert not exact and eager[0][0, 0] == v.max_detections
