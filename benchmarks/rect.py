"""Rectangular against square inference, in one run: the same weights served both ways (from one
models file: `square` and `rect`, rect: true), perf_analyzer (gRPC) on two sets of real JPEGs,
with Triton's statistics (the detector's mean batch: Triton batches only requests of one shape).

    python -m benchmarks.rect --weights yolov8n.pt --images DIR [--concurrency 1,4,16]
        [--out build/bench/rect.json]

Sets: `4:3`, the folder's 640x480 photos (the commonest coco128 shape: one rect shape, 480x640);
`mixed`, each photo of the folder as it is and cropped to 16:9, 9:16 and 1:1 (centre crops), in
turn, so consecutive requests rarely share a shape.
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
from pathlib import Path

import cv2

from benchmarks.bench import MEASURE_SECONDS, machine, perf_analyzer, statistics_between, triton_statistics, versions
from benchmarks.perf_input import perf_input

MODELS = {"square": {}, "rect": {"rect": True}}
CROPS = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1)}


def image_sets(folder: Path, work: Path) -> dict[str, list[Path]]:
    photos = sorted(folder.glob("*.jpg"))
    four_three = [p for p in photos if cv2.imread(str(p)).shape[:2] == (480, 640)]
    mixed = []
    for i, photo in enumerate(photos):
        image = cv2.imread(str(photo))
        name = (["as is", *CROPS])[i % (len(CROPS) + 1)]
        if name != "as is":
            w, h = CROPS[name]
            height, width = image.shape[:2]
            scale = min(width / w, height / h)
            cw, ch = int(w * scale), int(h * scale)
            top, left = (height - ch) // 2, (width - cw) // 2
            image = image[top : top + ch, left : left + cw]
        path = work / "mixed" / f"{photo.stem}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        mixed.append(path)
    return {"4:3": four_three, "mixed": mixed}


def compare(grpc_url: str, http_url: str, sets: dict[str, list[Path]], levels: list[int], work: Path) -> list[dict]:
    """perf_analyzer on each model of MODELS, each set, each concurrency: images/s, latency, and
    per stage the mean batch and times from Triton's statistics over the measurement."""
    rows = []
    for set_name, images in sets.items():
        data = work / f"{set_name.replace(':', 'x')}.json"
        data.write_text(json.dumps(perf_input(images)))
        for model in MODELS:
            for c in levels:
                before = triton_statistics(http_url)
                result, command = perf_analyzer(grpc_url, model, data, c, ["image:1"], work)
                stats = statistics_between(before, triton_statistics(http_url))
                rows.append(
                    {
                        "set": set_name,
                        "images": len(images),
                        "model": model,
                        "concurrency": c,
                        **result,
                        "triton_statistics": stats,
                        "command": command,
                    }
                )
                print(
                    {k: v for k, v in rows[-1].items() if k not in ("triton_statistics", "command")},
                    {k: v["mean_batch"] for k, v in stats.items()},
                    flush=True,
                )
    return rows


def models_file(weights: str, folder: Path, max_batch_size: int) -> Path:
    import yaml

    path = folder / "models.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                name: {"weights": str(Path(weights).resolve()), "max_batch_size": max_batch_size, **extra}
                for name, extra in MODELS.items()
            }
        )
    )
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("build/bench/rect.json"),
        help="where the results go (benchmarks/results/cpu/rect.json, the committed ones, only when named)",
    )
    args = parser.parse_args()

    from yolo_triton.models_file import load_models_file
    from yolo_triton.repository import ROOT, write_repository
    from yolo_triton.tritonserver import TritonServer, free_ports

    started = datetime.datetime.now(datetime.timezone.utc)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = models_file(args.weights, work, args.max_batch_size)
        repository = write_repository(work / "repository", load_models_file(source), source=str(source))
        sets = image_sets(args.images, work)
        with TritonServer(repository, ROOT / "build", *free_ports(3)) as server:
            rows = compare(server.grpc_url, server.http_url, sets, [int(c) for c in args.concurrency.split(",")], work)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": started.strftime("%Y-%m-%d %H:%M UTC"),
                "machine": machine(),
                "versions": versions(),
                "weights": Path(args.weights).name,
                "measure_seconds": MEASURE_SECONDS,
                "rows": rows,
            },
            indent=1,
        )
    )
    print(args.out)


if __name__ == "__main__":
    main()
