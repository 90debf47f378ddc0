"""`yolo-triton`: detect images with a served ensemble, evaluate one on labelled images, or serve
the HTTP gateway.

    yolo-triton detect bus.jpg photos/ 'more/**/*.jpg' --model yolov11_nano --save annotated/
    yolo-triton detect photos/ --format csv --output detections.csv --protocol http --url 127.0.0.1:8000
    yolo-triton eval coco128/images/train2017 --model yolov11_nano_eval --weights yolo11n.pt
    yolo-triton gateway --port 8080
    yolo-triton detect bus.jpg --url grpcs://triton.example.com --root-certificates ca.pem

TLS: a grpcs:// or https:// --url (--root-certificates for a private CA); headers for every
request: --header NAME=VALUE or YOLO_TRITON_HEADERS (yolo_triton/client/connection.py).

`detect` writes one JSON line (or CSV rows) per image, in the order given; an image the server
refuses gets its error there and on stderr, and the exit status is then 1. It exits with 2 when
nothing can be detected at all (no server, unknown model, no such file).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from contextlib import ExitStack
from pathlib import Path

from yolo_triton.client.async_detector import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CONCURRENCY,
    DEFAULT_MODEL,
    ClientError,
    ImageResult,
)
from yolo_triton.client.connection import DEFAULT_URLS, Connection, add_header_option, connect
from yolo_triton.client.detector import Detector

CSV_COLUMNS = ("image", "class_id", "class_name", "score", "x1", "y1", "x2", "y2", "error")


def _server_arguments(parser: argparse.ArgumentParser) -> None:
    """How to reach Triton, for every command that does (read back by _connection)."""
    parser.add_argument(
        "--protocol", choices=sorted(DEFAULT_URLS), help="grpc or http (default: the --url's scheme, else grpc)"
    )
    parser.add_argument(
        "--url",
        help="Triton's address: HOST:PORT, or grpcs://HOST[:PORT] / https://HOST[:PORT] for TLS "
        "(default 127.0.0.1:8001 for gRPC, 127.0.0.1:8000 for HTTP)",
    )
    parser.add_argument(
        "--root-certificates", type=Path, metavar="PEM", help="CA certificates that verify the server's TLS certificate"
    )
    add_header_option(parser)


def _connection(args) -> Connection:
    try:
        return connect(args.url, args.protocol, args.root_certificates, args.header)
    except ValueError as e:
        raise ClientError(str(e)) from None


def _connection_arguments(parser: argparse.ArgumentParser, model: str) -> None:
    parser.add_argument("--model", default=model, help=f"ensemble name (default {model})")
    _server_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="images per request")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="requests in flight")


def _detector(args) -> Detector:
    return Detector(args.model, _connection(args), batch_size=args.batch_size, concurrency=args.concurrency)


def _progress(total: int, enabled: bool | None):
    from tqdm import tqdm

    # enabled None: only where stderr is a terminal, so logs and pipes stay clean
    return tqdm(total=total, unit="img", file=sys.stderr, disable=None if enabled is None else not enabled)


class _CsvWriter:
    def __init__(self, out):
        self.writer = csv.writer(out)
        self.writer.writerow(CSV_COLUMNS)

    def write(self, result: ImageResult) -> None:
        if not result.detections:  # every image has a row, so none goes missing silently
            self.writer.writerow([result.source, "", "", "", "", "", "", "", result.error or ""])
        for d in result.detections:
            self.writer.writerow(
                [result.source, d.class_id, d.class_name, f"{d.score:.5f}", *(f"{v:.2f}" for v in d.box), ""]
            )


class _JsonLinesWriter:
    def __init__(self, out):
        self.out = out

    def write(self, result: ImageResult) -> None:
        self.out.write(json.dumps(result.to_dict()) + "\n")


def _annotated_path(save_dir: Path, source: str, used: set[str]) -> Path:
    name, n = f"{Path(source).stem}.jpg", 1
    while name in used:  # same file name from two folders
        name, n = f"{Path(source).stem}_{n}.jpg", n + 1
    used.add(name)
    return save_dir / name


def _annotated_saver(save_dir: Path | None):
    """save_annotated of the [draw] extra, imported only for --save: the client alone detects."""
    if save_dir is None:
        return None
    try:
        from yolo_triton.client.annotate import save_annotated
    except ModuleNotFoundError as e:
        raise ClientError(
            f'--save draws with OpenCV and Pillow ({e.name} is missing): in the checkout: pip install ".[draw]"'
        ) from None
    return save_annotated


def detect_command(args) -> int:
    from yolo_triton.client.async_detector import expand_sources

    save_annotated = _annotated_saver(args.save)
    images = expand_sources(args.sources)
    failures, saved = 0, set()
    with ExitStack() as stack:
        out = stack.enter_context(open(args.output, "w", newline="")) if args.output else sys.stdout
        writer = (_CsvWriter if args.format == "csv" else _JsonLinesWriter)(out)
        detector = stack.enter_context(_detector(args))
        progress = stack.enter_context(_progress(len(images), args.progress))
        for result in detector.stream(images):
            writer.write(result)
            if not result.ok:
                failures += 1
                progress.write(f"yolo-triton: {result.source}: {result.error}", file=sys.stderr)
            elif save_annotated:
                save_annotated(
                    Path(result.source).read_bytes(),
                    result.detections,
                    _annotated_path(args.save, result.source, saved),
                )
            progress.update()
    return 1 if failures else 0


def eval_command(args) -> int:
    from yolo_triton.client.evaluate import labelled_images, score, served_detections, ultralytics_val

    images = labelled_images(args.images)
    with _detector(args) as detector:
        ours = score(served_detections(detector.detect(images)), images, detector.class_names)
    lines = [f"{args.model} served at {detector.url}: {ours}"]
    if args.weights:  # val prints its own lines: ours come after them
        theirs = ultralytics_val(args.weights, images, args.model, rect=args.rect).scores
        lines += [
            f"ultralytics val {args.weights.name} (rect={args.rect}): {theirs}",
            f"difference: mAP50-95 {100 * (ours.map50_95 - theirs.map50_95):+.2f}  "
            f"mAP50 {100 * (ours.map50 - theirs.map50):+.2f} points",
        ]
    print("\n".join(lines))
    return 0


def gateway_command(args) -> int:
    try:
        import uvicorn

        from yolo_triton.client.gateway import create_app
    except ModuleNotFoundError as e:
        raise ClientError(
            f'the gateway runs on FastAPI and uvicorn ({e.name} is missing): in the checkout: pip install ".[gateway]"'
        ) from None

    uvicorn.run(create_app(_connection(args)), host=args.host, port=args.port, log_level="info")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="yolo-triton", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = top.add_subparsers(dest="command", required=True)

    detect = commands.add_parser("detect", help="detect objects in files, folders or globs")
    detect.add_argument("sources", nargs="+", help="image files, folders (their images) or glob patterns")
    _connection_arguments(detect, DEFAULT_MODEL)
    detect.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    detect.add_argument("--output", "-o", type=Path, help="write here instead of stdout")
    detect.add_argument("--save", type=Path, metavar="DIR", help="write annotated copies of the images here")
    detect.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    detect.set_defaults(run=detect_command)

    evaluate = commands.add_parser("eval", help="mAP of a served *_eval variant on labelled images")
    evaluate.add_argument(
        "images", type=Path, help="folder of images; labels in the Ultralytics layout (images/ -> labels/)"
    )
    _connection_arguments(evaluate, "yolov11_nano_eval")
    evaluate.add_argument("--weights", type=Path, help="also run `ultralytics val` of these weights on the same images")
    evaluate.add_argument(
        "--rect",
        action="store_true",
        help="val with rectangular batches (its .pt default) instead of the served 640x640 input",
    )
    evaluate.set_defaults(run=eval_command)

    gateway = commands.add_parser("gateway", help="serve POST /predict/{model} (FastAPI) in front of Triton")
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--port", type=int, default=8080)
    _server_arguments(gateway)
    gateway.set_defaults(run=gateway_command)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (ClientError, FileNotFoundError) as e:
        print(f"yolo-triton: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
