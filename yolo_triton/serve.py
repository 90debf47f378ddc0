"""`make serve`: build the model repository and serve it on 127.0.0.1 until Ctrl-C.

python -m yolo_triton.serve   (models from YOLO_MODELS_FILE, see yolo_triton.models_file, or
                               weights from YOLO_WEIGHTS / YOLO_WEIGHTS_DIR / YOLO_MODELS, see
                               yolo_triton.weights.resolve_weights; all on the GPU where
                               one and its runtime are, else the CPU: YOLO_DEVICE=gpu|cpu forces;
                               YOLO_TRITON_INFERENCE_KEY=NAME=VALUE: inference needs that header)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from yolo_triton.models_file import ModelsFileError
from yolo_triton.repository import DEFAULT_OUT, ROOT, SettingError, choose_target, chosen_precision, write_repository
from yolo_triton.targets import TARGETS
from yolo_triton.tritonserver import INFERENCE_KEY_ENV, TritonServer, gpu_server_args, inference_key_args, ports_in_use
from yolo_triton.weights import WeightsError, models_source, resolve_models

FIRST_REQUEST = """\
Serving {models} on 127.0.0.1 (HTTP {http}, gRPC {grpc}, metrics {metrics}). Ctrl-C stops it.
Send a first image from another shell:

  .venv/bin/yolo-triton detect --url 127.0.0.1:{grpc} --model {first} \\
      .venv/lib/python3*/site-packages/ultralytics/assets/bus.jpg
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--repository", type=Path, default=DEFAULT_OUT, help="where to write the model repository")
    args = parser.parse_args()

    ports = {"HTTP": args.http_port, "gRPC": args.grpc_port, "metrics": args.metrics_port}
    taken = ports_in_use(ports)
    if taken:  # before the export: tritonserver would only exit on it after minutes of it
        named = ", ".join(f"{port} ({name})" for name, port in taken.items())
        print(
            f"{'Port' if len(taken) == 1 else 'Ports'} {named} on 127.0.0.1 {'is' if len(taken) == 1 else 'are'} "
            "already in use, by another make serve perhaps: stop it, or serve on other ports "
            "(.venv/bin/python -m yolo_triton.serve --http-port 9000 --grpc-port 9001 --metrics-port 9002).",
            file=sys.stderr,
        )
        raise SystemExit(2)
    key = os.environ.get(INFERENCE_KEY_ENV)
    try:
        key_args = inference_key_args(key) if key else ()
    except ValueError as e:
        print(f"{INFERENCE_KEY_ENV}: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        target, precision = choose_target(), chosen_precision()
        models = resolve_models()
        print(
            f"Serving on the {'GPU' if TARGETS[target].on_gpu else 'CPU'}: detector target {target} "
            f"({TARGETS[target].description}).",
            flush=True,
        )
        print(f"Exporting and writing the model repository for {', '.join(models)} ...", flush=True)
        repository = write_repository(args.repository, models, target, precision, models_source())
    except (SettingError, WeightsError, ModelsFileError) as e:
        print(e, file=sys.stderr)
        raise SystemExit(2) from None
    server = TritonServer(
        repository,
        ROOT / "build",
        args.http_port,
        args.grpc_port,
        args.metrics_port,
        extra_args=(*(gpu_server_args() if TARGETS[target].on_gpu else ()), *key_args),
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server.start()
    except (RuntimeError, TimeoutError) as e:  # its own messages are above
        print(e, file=sys.stderr)
        raise SystemExit(1) from None
    try:
        print(
            FIRST_REQUEST.format(
                models=", ".join(models),
                first=next(iter(models)),
                http=args.http_port,
                grpc=args.grpc_port,
                metrics=args.metrics_port,
            ),
            flush=True,
        )
        if key:  # the request above then needs the header too
            name = key.partition("=")[0].strip().lower()
            print(f"Inference needs the header {name} ({INFERENCE_KEY_ENV}): YOLO_TRITON_HEADERS={name}=<the key>")
        while not stop.wait(1.0):
            if server.process.poll() is not None:
                raise SystemExit(f"tritonserver exited with code {server.process.returncode}")
    finally:
        server.stop()
    print("Stopped.")


if __name__ == "__main__":
    main()
