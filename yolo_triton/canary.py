"""A liveness check by real inference: one tiny JPEG through every served ensemble, which tells a
dead model process from a busy server.

Triton 2.51 keeps reporting a model ready after its Python-backend stub died (killed, out of
memory): every request to it then fails with "Stub process '<model>_0_0' is not healthy" until the
server restarts, while /v2/health/live and /v2/health/ready stay 200 (tests/L0_cpu_ensemble/
test_stub_fault.py). This check fails in that state, so an orchestrator restarts the server
(the Helm chart's liveness probe runs it; docker compose's healthcheck runs it with
--kill-server 1, since compose restarts a container only when its process exits).

A busy server is alive, and restarting it would only remove capacity when it is most needed: an
ensemble whose request is refused by a full queue ("Exceeds maximum queue size", normal under a
burst: docs/limits.md), times out or fails otherwise counts as alive while it answers other
requests (its success count in Triton's statistics grows). Dead is what means a dead model
process: the Python backend's own errors for it (python_backend r24.10: "Stub process '...' is
not healthy", "Failed to obtain the health mutex"), or an ensemble that answers no request at all
during the check (a dead stub under load: its queue stays full of requests that will fail).

    python -m yolo_triton.canary [--url 127.0.0.1:8000] [--timeout S] [--attempts N] [--header NAME=VALUE]
                                 [--kill-server PID]
        exit 0: every ensemble answered or is busy; 1: names the dead ones, or the server is not
        ready (loading, stopping: a startup probe's business) and is never stopped for that; with
        --kill-server, PID gets a SIGTERM when the server says it is ready but an ensemble is dead.
        Ensembles are checked at once, each within (attempts + 1) x timeout seconds and 1 s between tries.

It needs only the standard library, Pillow and numpy (as in the Triton image). Every request carries
the headers of --header and YOLO_TRITON_HEADERS (NAME=VALUE, as for the client: the inference key
where the server restricts inference) and, with the chart's restricted repository API, the admin
key of TRITON_ADMIN_KEY (header TRITON_ADMIN_HEADER).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import struct
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from yolo_triton.client.connection import add_header_option, environment_headers, parse_headers
from yolo_triton.contract import IMAGE_INPUT, is_ensemble

# The Python backend's errors for a stub that exited or hangs while holding its health lock; they
# come back wrapped ("Failed to process the request(s) for model instance '...', message: ...").
DEAD_PROCESS = re.compile(r"Stub process (?:'[^']*' )?is not healthy|Failed to obtain the health mutex")
RETRY_PAUSE_S = 1.0


def tiny_jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (114, 114, 114)).save(buffer, "JPEG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Server:
    """Triton's HTTP endpoint, and the headers every request carries: the inference key where the
    server restricts inference (--header, YOLO_TRITON_HEADERS), the admin key (TRITON_ADMIN_KEY)."""

    base: str
    headers: dict
    timeout: float

    def request(self, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        """(status, body) of a GET (body None) or POST; TimeoutError when no answer came in time."""
        request = urllib.request.Request(
            self.base + path,
            data=body,
            headers={**self.headers, **(headers or {})},
            method="GET" if body is None else "POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except urllib.error.URLError as e:  # a connect that timed out comes wrapped
            if isinstance(e.reason, TimeoutError):
                raise e.reason from None
            raise


def admin_headers() -> dict[str, str]:
    key = os.environ.get("TRITON_ADMIN_KEY")
    return {os.environ.get("TRITON_ADMIN_HEADER", "triton-admin-key"): key} if key else {}


def ensembles(server: Server) -> list[str]:
    status, body = server.request("/v2/repository/index", b"{}")
    if status != 200:
        raise RuntimeError(f"repository index: HTTP {status}: {body[:200]!r}")
    return sorted(m["name"] for m in json.loads(body) if m.get("state") == "READY" and is_ensemble(m["name"]))


def infer(server: Server, model: str, image: bytes) -> str | None:
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
    try:
        status, body = server.request(
            f"/v2/models/{model}/infer",
            header + struct.pack("<I", len(image)) + image,
            {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
        )
    except TimeoutError:
        return f"no answer in {server.timeout:g} s"
    except OSError as e:  # the connection refused or dropped: an attempt that failed, not a crash of the check
        return f"connection failed: {e}"
    return None if status == 200 else f"HTTP {status}: {body[:300].decode(errors='replace')}"


def answered(server: Server, model: str) -> int | None:
    """How many requests the model has answered successfully (Triton's statistics); None: unknown."""
    try:
        status, body = server.request(f"/v2/models/{model}/stats")
        if status == 200:
            return sum(s["inference_stats"]["success"]["count"] for s in json.loads(body)["model_stats"])
    except (OSError, ValueError, KeyError):
        pass
    return None


@dataclass(frozen=True)
class Verdict:
    dead: bool
    note: str = ""  # what happened, when the ensemble did not simply answer


def check(server: Server, model: str, image: bytes, attempts: int) -> Verdict:
    """One ensemble: answered, busy (alive) or dead. Refused by a full queue, timed out or failed
    otherwise, it is busy if it answers other requests meanwhile; a full queue that never drains is
    no proof of life: under load, clients keep a dead stub's queue full (the backend takes a second
    or two to fail each of its batches), so its refusals hide the stub's own error."""
    before = answered(server, model)

    def busy(wait: float) -> bool:
        deadline = time.monotonic() + wait
        while True:
            now = answered(server, model)
            if now is None or before is None or now > before:  # statistics unanswered: too busy to tell
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)

    error = None
    for attempt in range(attempts):
        if attempt:
            time.sleep(RETRY_PAUSE_S)
        error = infer(server, model, image)
        if error is None:
            return Verdict(False)
        if DEAD_PROCESS.search(error):
            return Verdict(True, f"dead: {error}")  # no retry brings a stub back
        if error.startswith("HTTP 403"):  # the server restricts inference to a key the canary lacks
            return Verdict(True, f"refused (a key to send? --header, YOLO_TRITON_HEADERS): {error}")
        if busy(0 if attempt < attempts - 1 else server.timeout):
            return Verdict(False, f"busy, answering other requests: {error}")
    return Verdict(True, f"dead: answered no request during the check: {error}")


def longest_run_s(timeout: float, attempts: int) -> float:
    """The longest a run of the canary can take, each request taking its whole timeout: the ready
    and index requests, then (all ensembles at once) the statistics before the tries, each try and
    the statistics after it, the last of which are polled for one timeout more, the pauses between
    tries, and 5 s for Python to start. A probe's own timeout must be at least this."""
    return (3 + 2 * attempts + 1) * timeout + (attempts - 1) * RETRY_PAUSE_S + 5


def ready(server: Server) -> bool:
    """Whether the server says it is ready; TimeoutError when it does not answer in time."""
    try:
        return server.request("/v2/health/ready")[0] == 200
    except TimeoutError:
        raise
    except OSError:  # refused: not listening (yet)
        return False


def _ready_now(server: Server) -> bool:
    try:
        return ready(server)
    except TimeoutError:
        return False


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="127.0.0.1:8000", help="Triton's HTTP address")
    parser.add_argument("--timeout", type=float, default=8.0, help="seconds per request")
    parser.add_argument(
        "--attempts",
        type=int,
        default=3,
        help="tries of an ensemble that neither answers nor is refused by a full queue",
    )
    parser.add_argument(
        "--kill-server", type=int, metavar="PID", help="SIGTERM this process when a ready server has a dead ensemble"
    )
    add_header_option(parser, "a header for every request, e.g. the inference key")
    return parser


def main(argv: list[str] | None = None) -> int:
    command_line = parser()
    args = command_line.parse_args(argv)
    try:
        headers = {**environment_headers(), **parse_headers(args.header), **admin_headers()}
    except ValueError as e:
        command_line.error(str(e))
    server, image = Server(f"http://{args.url}", headers, args.timeout), tiny_jpeg()
    try:
        if not ready(server):
            print("canary: the server is not ready (loading or stopping)", file=sys.stderr)
            return 1
        models = ensembles(server)
    except TimeoutError:
        print(f"canary: busy: the server did not answer in {args.timeout:g} s", file=sys.stderr)
        return 0
    except (OSError, RuntimeError) as e:
        print(f"canary: {e}", file=sys.stderr)
        return 1
    with ThreadPoolExecutor(max(1, len(models))) as pool:
        verdicts = dict(zip(models, pool.map(lambda m: check(server, m, image, args.attempts), models)))
    for model, verdict in verdicts.items():
        if verdict.note:
            print(f"canary: {model}: {verdict.note}", file=sys.stderr)
    dead = [m for m, v in verdicts.items() if v.dead]
    if dead and args.kill_server and _ready_now(server):
        print(f"canary: the server says it is ready but cannot serve: SIGTERM to {args.kill_server}", file=sys.stderr)
        os.kill(args.kill_server, signal.SIGTERM)
    return 1 if dead else 0


if __name__ == "__main__":
    sys.exit(main())
