"""What README's first steps do: `make serve` (python -m yolo_triton.serve) with offline weights,
the printed client command on a first image, then Ctrl-C stops the server cleanly; a port already
taken is said in one line, before any export."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

from conftest import ultralytics_assets, weights_of

from yolo_triton.repository import ROOT
from yolo_triton.tritonserver import free_ports


def test_serve_answers_the_printed_first_request_and_stops_on_ctrl_c(tmp_path):
    http, grpc, metrics = free_ports(3)
    env = {**os.environ, "YOLO_WEIGHTS": str(weights_of("yolov8_nano"))}
    env.pop("YOLO_MODELS", None), env.pop("YOLO_WEIGHTS_DIR", None)
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "yolo_triton.serve",
            "--repository",
            str(tmp_path / "repo"),
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--metrics-port",
            str(metrics),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines, deadline = [], time.monotonic() + 300
        while not any(line.startswith("Serving yolov8_nano on 127.0.0.1") for line in lines):
            assert time.monotonic() < deadline and serve.poll() is None, "".join(lines[-30:])
            lines.append(serve.stdout.readline())
        detect = subprocess.run(
            [
                sys.executable,
                "-m",
                "yolo_triton.client.cli",
                "detect",
                "--url",
                f"127.0.0.1:{grpc}",
                "--model",
                "yolov8_nano",
                str(ultralytics_assets() / "bus.jpg"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        answer = json.loads(detect.stdout)
        names = sorted(d["class_name"] for d in answer["detections"])
        assert names.count("person") >= 4 and "bus" in names, answer  # the official yolov8n on bus.jpg
    finally:
        serve.send_signal(signal.SIGINT)
        rest = serve.communicate(timeout=120)[0]
    assert serve.returncode == 0, rest[-3000:]
    assert rest.rstrip().endswith("Stopped.")


def test_a_port_in_use_is_one_line_before_any_export(tmp_path):
    http, grpc, metrics = free_ports(3)
    with socket.socket() as listener:  # another server on the gRPC port
        listener.bind(("127.0.0.1", grpc))
        listener.listen()
        run = subprocess.run(
            [sys.executable, "-m", "yolo_triton.serve", "--repository", str(tmp_path / "repo")]
            + ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 2 and not run.stdout, run.stdout + run.stderr
    (line,) = run.stderr.splitlines()
    assert line.startswith(f"Port {grpc} (gRPC) on 127.0.0.1 is already in use") and "--grpc-port" in line
    assert not (tmp_path / "repo").exists()
