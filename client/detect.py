"""Send encoded images to an ensemble and read back its detections (tritonclient, HTTP or gRPC).

    python -m yolo_triton.client.detect --model yolov11_nano [--url 127.0.0.1:8001] [--protocol grpc] IMAGE...

prints one JSON line per image: {"image", "detections": [{"class_id", "class_name", "score", "box"}]}.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yolo_triton.contract import IMAGE_INPUT, VARIANTS
from yolo_triton.client.coco import COCO_NAMES

DEFAULT_URLS = {"grpc": "127.0.0.1:8001", "http": "127.0.0.1:8000"}


@dataclass(frozen=True)
class Detection:
    class_id: int
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the original image's pixels

    @property
    def class_name(self) -> str:
        return COCO_NAMES[self.class_id]


def _tritonclient(protocol: str):
    if protocol == "grpc":
        import tritonclient.grpc as module
    elif protocol == "http":
        import tritonclient.http as module
    else:
        raise ValueError(f"protocol must be grpc or http, not {protocol!r}")
    return module


def image_input(images: list[bytes], protocol: str = "grpc"):
    """The ensemble's `image` input for a batch of encoded images (one per row)."""
    tensor = _tritonclient(protocol).InferInput(IMAGE_INPUT.name, [len(images), *IMAGE_INPUT.dims], IMAGE_INPUT.datatype)
    tensor.set_data_from_numpy(np.array(images, dtype=object).reshape(len(images), *IMAGE_INPUT.dims))
    return tensor


def parse_result(result, model: str) -> list[list[Detection]]:
    """Per image of a response: its detections (the rows before num_dets; the rest is padding)."""
    num, boxes, scores, classes = (result.as_numpy(spec.name) for spec in VARIANTS[model].outputs)
    return [
        [Detection(int(c), float(s), tuple(float(x) for x in b)) for b, s, c in zip(boxes[i, :n], scores[i, :n], classes[i, :n])]
        for i, n in enumerate(num.reshape(-1))
    ]


def detect(images: list[bytes], model: str = "yolov11_nano", url: str | None = None, protocol: str = "grpc") -> list[list[Detection]]:
    """Detections for each encoded image, all sent in one request."""
    module = _tritonclient(protocol)
    with module.InferenceServerClient(url or DEFAULT_URLS[protocol]) as client:
        return parse_result(client.infer(model, [image_input(images, protocol)]), model)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--model", default="yolov11_nano", choices=sorted(VARIANTS))
    parser.add_argument("--protocol", default="grpc", choices=sorted(DEFAULT_URLS))
    parser.add_argument("--url", help="server address (default 127.0.0.1:8001 for gRPC, :8000 for HTTP)")
    args = parser.parse_args()
    results = detect([p.read_bytes() for p in args.images], args.model, args.url, args.protocol)
    for path, detections in zip(args.images, results):
        print(json.dumps({"image": str(path), "detections": [
            {"class_id": d.class_id, "class_name": d.class_name, "score": round(d.score, 4), "box": [round(x, 1) for x in d.box]}
            for d in detections]}))


if __name__ == "__main__":
    main()
