"""Write perf_analyzer's --input-data JSON from a folder of real images.

perf_analyzer reads a BYTES element given as base64 in its serialised form: a 4-byte little-endian
length, then the bytes. One entry per image; perf_analyzer cycles through them.

    python benchmarks/perf_input.py IMAGE_DIR -o build/bench/perf_input.json
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
from pathlib import Path

from yolo_triton.contract import IMAGE_INPUT

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def serialised_bytes(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


def perf_input(images: list[Path]) -> dict:
    return {
        "data": [
            {
                IMAGE_INPUT.name: {
                    "content": {"b64": base64.b64encode(serialised_bytes(p.read_bytes())).decode()},
                    "shape": list(IMAGE_INPUT.dims),
                }
            }
            for p in images
        ]
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    images = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise SystemExit(f"no images in {args.folder}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(perf_input(images)))
    print(f"{args.output}: {len(images)} images")


if __name__ == "__main__":
    main()
