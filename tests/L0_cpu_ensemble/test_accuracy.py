"""The served ensembles (the built-in ones, a model of one's own with 3 classes, input sizes 320
and 1280, rectangular inference) give Ultralytics' own detections on the same weights: for the
128 coco128 photos plus bus.jpg
and zidane.jpg, >= 99% of Ultralytics' detections matched (same class, IoU >= 0.9, |score
difference| <= 0.02) and <= 1% extra, over HTTP and gRPC. The reference is `predict`; for the
multi-label `*_eval` variants it is `val`'s saved detections, on the images val letterboxes as
predict does."""

import pytest
from conftest import ALL_SERVED, MATCH_REPORT
from matching import Detections, MatchCounts, letterboxed_alike

from yolo_triton.client.async_detector import image_input

IMAGES_PER_REQUEST = 10


def served_detections(client, protocol, name, paths, outputs_of, per_request: int = IMAGES_PER_REQUEST) -> dict:
    found = {}
    for i in range(0, len(paths), per_request):
        chunk = paths[i : i + per_request]
        result = client.infer(name, [image_input([p.read_bytes() for p in chunk], protocol)])
        outputs = [result.as_numpy(s.name) for s in outputs_of]
        for row, path in enumerate(chunk):
            found[path] = Detections.from_outputs(*(o[row] for o in outputs))
    return found


@pytest.mark.parametrize("name", ALL_SERVED)
def test_detections_match_ultralytics(client, protocol, name, test_images, reference, served_models):
    v = served_models[name]
    if v.multi_label:  # the reference is val's own detections
        test_images = letterboxed_alike(test_images, v.imgsz)
    expected = reference(name, test_images)
    # rect: one image per request, each letterboxed to its own shape (a request of mixed shapes is
    # letterboxed square, as Ultralytics' predict does a batch of mixed shapes)
    ours = served_detections(
        client, protocol, name, test_images, v.outputs, 1 if v.rect else min(IMAGES_PER_REQUEST, v.max_batch_size)
    )
    counts = MatchCounts()
    for path in test_images:
        counts.add(path.name, expected[path], ours[path])
    MATCH_REPORT.append(f"{name:18s} {protocol:4s} {len(test_images)} images: {counts}")
    assert counts.reference > 0
    assert counts.matched_fraction >= 0.99, f"{counts}; first misses: {counts.misses[:5]}"
    assert counts.extra_fraction <= 0.01, str(counts)
