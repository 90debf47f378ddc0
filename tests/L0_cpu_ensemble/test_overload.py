"""A burst far beyond capacity: the bounded queues (QUEUE_BATCHES max-size batches per model)
reject the excess at once with a clear error, every other request gets its own correct answer,
nothing is lost, and the server serves normally right after. (yolov11_medium: the slowest
detector and the smallest queues, so the burst stays small.)"""

from concurrent.futures import ThreadPoolExecutor

import tritonclient.grpc as grpc
from matching import Detections, MatchCounts

from yolo_triton.client.async_detector import image_input
from yolo_triton.contract import VARIANTS
from yolo_triton.model_config import QUEUE_BATCHES

MODEL = "yolov11_medium"


def test_burst_beyond_capacity_is_rejected_cleanly_and_the_server_recovers(triton, test_images, reference):
    v = VARIANTS[MODEL]
    burst = 3 * QUEUE_BATCHES * v.max_batch_size
    photos = test_images[:16]
    expected = reference(MODEL, photos)
    payloads = [p.read_bytes() for p in photos]

    def send(i):
        with grpc.InferenceServerClient(triton.grpc_url) as c:
            try:
                return c.infer(MODEL, [image_input([payloads[i % len(photos)]])])
            except grpc.InferenceServerException as e:
                return e

    with ThreadPoolExecutor(burst) as pool:  # all in flight at once
        answers = list(pool.map(send, range(burst)))

    rejected = [a for a in answers if isinstance(a, grpc.InferenceServerException)]
    served = [(i, a) for i, a in enumerate(answers) if not isinstance(a, grpc.InferenceServerException)]
    assert rejected, f"a burst of {burst} should overflow queues of {QUEUE_BATCHES * v.max_batch_size}"
    assert {e.message().split("] ")[-1] for e in rejected} == {"Exceeds maximum queue size"}, {
        e.message() for e in rejected
    }
    assert {e.status() for e in rejected} == {"StatusCode.UNAVAILABLE"}  # retryable: docs/limits.md
    assert len(served) + len(rejected) == burst and served
    for i, result in served:  # each served request got the answer of its own image
        path = photos[i % len(photos)]
        one = MatchCounts()
        one.add(path.name, expected[path], Detections.from_outputs(*(result.as_numpy(s.name)[0] for s in v.outputs)))
        assert one.matched == one.reference == one.ours, f"request {i} ({path.name}): {one}"

    with grpc.InferenceServerClient(triton.grpc_url) as c:  # recovered
        after = c.infer(MODEL, [image_input([payloads[0]])])
        assert int(after.as_numpy("num_dets")[0, 0]) == len(expected[photos[0]].scores)
        assert c.is_server_ready()
