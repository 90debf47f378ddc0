"""A liveness check by real inference: one tiny JPEG through every served ensemble.

Triton 2.51 keeps reporting a model ready after its Python-backend stub died (killed, out of
memory): every request to it then fails with "Stub process '<model>_0_0' is not healthy" until the
server restarts, while /v2/health/live and /v2/health/ready stay 200 (tests/L0_cpu_ensemble/
test_stub_fault.py). This check fails in that state, so an orchestrator restarts the server
(the Helm chart's liveness probe runs it; docker compose's healthcheck runs it with
--kill-server 1, since compose restarts a container only when its process exits):

    python -m yolo_triton.canary [--url 127.0.0.1:8000] [--kill-server PID]
        exit 0: every ensemble answers; 1: names the failures (and, with --kill-server, sends PID a
        SIGTERM when the server says it is ready but an ensemble failed --attempts times in a row:
        a loading server is never killed)

It needs only the standard library, Pillow and numpy (as in the Triton image). With the chart's
restricted repository API, the admin key comes from TRITON_ADMIN_KEY (header TRITON_ADMIN_HEADER).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import struct
import sys
import time
import urllib.error
import urllib.request

from yolo_triton.contract import IMAGE_INPUT, is_ensemble


def tiny_jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (114, 114, 114)).save(buffer, "JPEG")
    return buffer.getvalue()


def _post(url: str, body: bytes, headers: dict, timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def ensembles(base: str, timeout: float) -> list[str]:
    headers = {}
    if os.environ.get("TRITON_ADMIN_KEY"):
        headers[os.environ.get("TRITON_ADMIN_HEADER", "triton-admin-key")] = os.environ["TRITON_ADMIN_KEY"]
    status, body = _post(f"{base}/v2/repository/index", b"{}", headers, timeout)
    if status != 200:
        raise RuntimeError(f"repository index: HTTP {status}: {body[:200]!r}")
    return sorted(m["name"] for m in json.loads(body) if m.get("state") == "READY" and is_ensemble(m["name"]))


def infer(base: str, model: str, image: bytes, timeout: float) -> str | None:
    """None when the model answers; else what went wrong. The image travels as a binary tensor
    (Triton's binary-data extension: JSON header, then 4-byte length + bytes)."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": IMAGE_INPUT.name,
                    "shape": [1, 1],
                    "datatype": IMAGE_INPUT.datatype,
                    "parameters": {"binary_data_size": 4 + len(image)},
                }
            ],
            "outputs": [{"name": "num_dets", "parameters": {"binary_data": False}}],
        }
    ).encode()
    status, body = _post(
        f"{base}/v2/models/{model}/infer",
        header + struct.pack("<I", len(image)) + image,
        {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
        timeout,
    )
    return None if status == 200 else f"HTTP {status}: {body[:300].decode(errors='replace')}"


def ready(base: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="127.0.0.1:8000", help="Triton's HTTP address")
    parser.add_argument("--timeout", type=float, default=8.0, help="seconds per request")
    parser.add_argument(
        "--attempts", type=int, default=3, help="tries of a failing ensemble before it counts as failed"
    )
    parser.add_argument("--kill-server", type=int, metavar="PID", help="SIGTERM this process when a ready server fails")
    args = parser.parse_args(argv)
    base, image = f"http://{args.url}", tiny_jpeg()
    try:
        failures = {}
        for model in ensembles(base, args.timeout):
            for _ in range(args.attempts):  # a request refused under a burst is no dead model
                failures[model] = infer(base, model, image, args.timeout)
                if failures[model] is None:
                    del failures[model]
                    break
                time.sleep(1.0)
    except (OSError, RuntimeError) as e:
        print(f"canary: {e}", file=sys.stderr)
        return 1
    for model, error in failures.items():
        print(f"canary: {model}: {error}", file=sys.stderr)
    if failures and args.kill_server and ready(base, args.timeout):
        print(f"canary: the server says it is ready but cannot serve: SIGTERM to {args.kill_server}", file=sys.stderr)
        os.kill(args.kill_server, signal.SIGTERM)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
