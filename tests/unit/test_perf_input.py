"""perf_analyzer's input JSON decodes back to the very image bytes (4-byte little-endian length + bytes)."""

import base64
import json
import struct

from benchmarks.perf_input import perf_input


def test_perf_input_round_trips_the_jpeg_bytes(test_images):
    images = test_images[:5] + test_images[-2:]
    data = json.loads(json.dumps(perf_input(images)))["data"]
    assert len(data) == len(images)
    for entry, path in zip(data, images):
        raw = base64.b64decode(entry["image"]["content"]["b64"])
        (length,) = struct.unpack("<I", raw[:4])
        assert length == len(raw) - 4 and raw[4:] == path.read_bytes()
        assert entry["image"]["shape"] == [1]


def test_detector_input_round_trips_the_letterboxed_batch(test_images, tmp_path):
    import numpy as np

    from benchmarks.bench import detector_input
    from yolo_triton.contract import VARIANTS
    from yolo_triton.preprocessing import CpuPreprocessor

    paths = test_images[:3]
    data = json.loads(detector_input(paths, VARIANTS["yolov11_nano"], tmp_path / "d.json").read_text())["data"]
    cpu = CpuPreprocessor(640)
    batch, params = cpu.letterbox(cpu.decode([p.read_bytes() for p in paths]))
    for entry, image, row in zip(data, batch, params):
        pixels = np.frombuffer(base64.b64decode(entry["images"]["b64"]), np.uint8).reshape(entry["images"]["shape"])
        np.testing.assert_array_equal(pixels, image)
        np.testing.assert_allclose(entry["letterbox"]["content"], row)
