"""The pytorch-gpu target's repository, served by the real Triton with its detector moved to the CPU
(no GPU here: decoding on OpenCV, the PyTorch network eager instead of CUDA graphs, the images from
host memory instead of DLPack): the Python model's batching, padding rows and per-request split give
each request Ultralytics' detections of its own photos, and a request that does not decode fails
alone. The GPU path itself runs on the GPU machine (tests/device,
benchmarks/RESULTS.md)."""

from concurrent.futures import ThreadPoolExecutor

import tritonclient.grpc as grpc
from conftest import RECT_MODEL, weights_of
from google.protobuf import text_format
from matching import Detections, MatchCounts
from tritonclient.grpc import model_config_pb2

from yolo_triton.client.async_detector import image_input
from yolo_triton.repository import write_repository
from yolo_triton.tritonserver import TritonServer, free_ports

# best class with NMS, the NMS-free head, and rect (each request letterboxed to its own shape: one
# network call per shape in an execution)
MODELS = ("yolov11_nano", "yolov26_nano", RECT_MODEL)


def _on_the_cpu(repository):
    for path in repository.glob("*/config.pbtxt"):
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        for group in config.instance_group:
            group.kind = model_config_pb2.ModelInstanceGroup.KIND_CPU
            group.count = 2  # a GPU's four would hold 8 GB of host memory here, for nothing this test needs
        if "preprocess_device" in config.parameters:  # the detectors'
            config.parameters["preprocess_device"].string_value = "cpu"
        path.write_text(text_format.MessageToString(config, as_utf8=True))


def test_pytorch_detector_served(tmp_path, test_images, reference, served_models):
    models = {m: served_models[m] if m == RECT_MODEL else str(weights_of(m)) for m in MODELS}
    repository = write_repository(tmp_path / "repository", models, "pytorch-gpu")
    assert {p.name for p in repository.glob("*_detector/1/*")} == {"model.py", "model.pt", "model.pt.key"}
    assert not list(repository.glob("preprocess*"))  # the detector decodes and letterboxes itself
    _on_the_cpu(repository)
    photos = test_images[:24]
    server = TritonServer(repository, tmp_path / "build", *free_ports(3), log=tmp_path / "tritonserver.log")
    with server:
        for model in MODELS:
            v, expected = reference.variant(model), reference(model, photos)

            def send(chunk):  # requests of 1 to 3 photos, batched together by Triton
                rows = [p.read_bytes() if p is not None else b"not an image" for p in chunk]
                with grpc.InferenceServerClient(server.grpc_url) as client:
                    try:
                        return chunk, client.infer(model, [image_input(rows)])
                    except grpc.InferenceServerException as e:
                        return chunk, e

            starts = [0, 1, 3, 6, 7, 9, 12, 13, 15, 18, 19, 21, 24]  # requests of 1, 2 and 3 photos
            chunks = [photos[a:b] for a, b in zip(starts, starts[1:])]
            if v.rect:  # one photo each, as the reference (Ultralytics pads photos of several shapes to a square)
                chunks = [[p] for p in photos]
            bad = [[photos[0], None]] * 3  # a good photo, then a row that does not decode
            counts = MatchCounts()
            with ThreadPoolExecutor(8) as pool:
                for chunk, result in pool.map(send, [*chunks[:6], *bad, *chunks[6:]]):
                    if None in chunk:
                        assert isinstance(result, grpc.InferenceServerException), result
                        assert "image 1 of 2" in result.message(), result.message()
                        continue
                    for row, path in enumerate(chunk):
                        outputs = [result.as_numpy(s.name)[row] for s in v.outputs]
                        counts.add(path.name, expected[path], Detections.from_outputs(*outputs))
            assert counts.matched_fraction >= 0.99 and counts.extra_fraction <= 0.01, f"{model}: {counts}"
            with grpc.InferenceServerClient(server.grpc_url) as client:
                (stats,) = client.get_inference_statistics(v.detector).model_stats
            assert stats.inference_count > stats.execution_count, "no execution held several requests"
    log = (tmp_path / "tritonserver.log").read_text()
    assert "PyTorch" in log and "eager, decoding and letterboxing on the CPU (OpenCV)" in log
