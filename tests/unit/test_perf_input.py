"""perf_analyzer's input JSON decodes back to the very image bytes (4-byte little-endian length + bytes)."""

import base64
import json
import struct

from yolo_triton.benchmarks.perf_input import perf_input


def test_perf_input_round_trips_the_jpeg_bytes(test_images):
    images = test_images[:5] + test_images[-2:]
    data = json.loads(json.dumps(perf_input(images)))["data"]
    assert len(data) == len(images)
    for entry, path in zip(data, images):
        raw = base64.b64decode(entry["image"]["content"]["b64"])
        (length,) = struct.unpack("<I", raw[:4])
        assert length == len(raw) - 4 and raw[4:] == path.read_bytes()
        assert entry["image"]["shape"] == [1]
