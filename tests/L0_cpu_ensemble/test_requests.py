"""Several images in one request, many requests at once, and bad input: each request gets its own
answer; a bad image fails only its own request, with a message naming the problem."""

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from matching import Detections, MatchCounts

from yolo_triton.client.async_detector import image_input, tritonclient_module
from yolo_triton.contract import VARIANTS

MODEL = "yolov11_nano"
OUTPUTS = VARIANTS[MODEL].outputs


def _rows(result) -> list[tuple]:
    """Per image: (num_dets, boxes, scores, classes) of the response."""
    outputs = [result.as_numpy(s.name) for s in OUTPUTS]
    return [tuple(o[i] for o in outputs) for i in range(len(outputs[0]))]


def _assert_well_formed(row, height: int, width: int):
    num, boxes, scores, classes = row
    n = int(num[0])
    assert 0 <= n <= VARIANTS[MODEL].max_detections
    assert boxes.dtype == np.float32 and scores.dtype == np.float32 and classes.dtype == np.int32
    live = boxes[:n]
    assert (live[:, [0, 2]] >= 0).all() and (live[:, [0, 2]] <= width).all(), "x outside the image"
    assert (live[:, [1, 3]] >= 0).all() and (live[:, [1, 3]] <= height).all(), "y outside the image"
    assert (live[:, 2] >= live[:, 0]).all() and (live[:, 3] >= live[:, 1]).all()
    assert np.all(np.diff(scores[:n]) <= 0), "detections sorted by score"
    assert (boxes[n:] == 0).all() and (scores[n:] == 0).all() and (classes[n:] == -1).all(), "padding rows"


def _shape(path):
    return cv2.imread(str(path)).shape[:2]


def test_one_request_with_images_of_different_sizes(client, protocol, test_images, reference):
    # bus 810x1080, zidane 1280x720, and coco photos of other sizes and orientations
    paths = [test_images[-2], test_images[-1], *test_images[:6]]
    assert len({_shape(p) for p in paths}) >= 4
    result = client.infer(MODEL, [image_input([p.read_bytes() for p in paths], protocol)])
    rows = _rows(result)
    assert len(rows) == len(paths)
    expected = reference(MODEL, paths)
    for path, row in zip(paths, rows):
        _assert_well_formed(row, *_shape(path))
        counts = MatchCounts()
        counts.add(path.name, expected[path], Detections.from_outputs(*row))
        assert counts.matched == counts.reference == counts.ours, f"{path.name}: {counts}"


def _stats(client, protocol, model):
    stats = client.get_inference_statistics(model)
    if protocol == "grpc":
        from google.protobuf.json_format import MessageToDict

        stats = MessageToDict(stats, preserving_proto_field_name=True)
    s = stats["model_stats"][0]
    return int(s.get("inference_count", 0)), int(s.get("execution_count", 0))


def test_concurrent_requests_each_get_their_own_detections(triton, client, protocol, test_images, reference):
    rng = np.random.default_rng(7)
    requests = [list(rng.choice(len(test_images), size=rng.integers(1, 4), replace=False)) for _ in range(48)]
    url = triton.http_url if protocol == "http" else triton.grpc_url
    before = _stats(client, protocol, "preprocess")

    def send(indices):
        with tritonclient_module(protocol).InferenceServerClient(url) as c:
            return _rows(c.infer(MODEL, [image_input([test_images[i].read_bytes() for i in indices], protocol)]))

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, requests))
    after = _stats(client, protocol, "preprocess")

    expected = reference(MODEL, test_images)
    counts = MatchCounts()
    for indices, rows in zip(requests, answers):
        assert len(rows) == len(indices)
        for i, row in zip(indices, rows):
            one = MatchCounts()
            one.add(test_images[i].name, expected[test_images[i]], Detections.from_outputs(*row))
            assert one.matched == one.reference == one.ours, f"{test_images[i].name}: answer of another image? {one}"
            counts.add(test_images[i].name, expected[test_images[i]], Detections.from_outputs(*row))
    assert counts.matched_fraction == 1.0 and counts.extra_fraction == 0.0
    images, executions = after[0] - before[0], after[1] - before[1]
    assert images == sum(map(len, requests))
    assert executions < len(requests), "requests were batched together by the dynamic batcher"


BAD_INPUTS = {
    "empty bytes": (lambda good: b"", "empty input"),
    "random bytes": (lambda good: np.random.default_rng(3).bytes(20000), "cannot decode"),
    "truncated JPEG": (lambda good: good[:300], "truncated JPEG (300 bytes): no end-of-image marker"),
    "non-image file": (lambda good: b"#!/bin/sh\necho this is not an image\n" * 20, "cannot decode"),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_fails_only_its_own_request(triton, client, protocol, test_images, reference, kind):
    make_bad, message = BAD_INPUTS[kind]
    good_paths = test_images[:12]
    bad = make_bad(good_paths[0].read_bytes())
    url = triton.http_url if protocol == "http" else triton.grpc_url
    module = tritonclient_module(protocol)
    # one request carrying the bad image among good ones, and good requests sent at the same time
    batches = [[p.read_bytes()] for p in good_paths] + [[bad]] + [[good_paths[0].read_bytes(), bad]]

    def send(images):
        with module.InferenceServerClient(url) as c:
            try:
                return _rows(c.infer(MODEL, [image_input(images, protocol)]))
            except module.InferenceServerException as e:
                return e

    with ThreadPoolExecutor(len(batches)) as pool:
        answers = list(pool.map(send, batches))

    expected = reference(MODEL, good_paths)
    for path, answer in zip(good_paths, answers):
        assert not isinstance(answer, Exception), f"a good request failed beside a bad one: {answer}"
        one = MatchCounts()
        one.add(path.name, expected[path], Detections.from_outputs(*answer[0]))
        assert one.matched == one.reference == one.ours
    alone, mixed = answers[-2], answers[-1]
    assert isinstance(alone, module.InferenceServerException) and message in alone.message()
    assert "image 0 of 1" in alone.message()
    assert alone.status() == ("400" if protocol == "http" else "StatusCode.INVALID_ARGUMENT")
    assert isinstance(mixed, module.InferenceServerException) and "image 1 of 2" in mixed.message()
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
