"""The canary's inference attempt against an address where nothing listens: a failed attempt (the
check retries it and then judges), not an exception out of the probe. The canary against the real
server, saturated and with killed stubs: tests/L0_cpu_ensemble/test_stub_fault.py."""

import socket

from yolo_triton.canary import Server, infer, tiny_jpeg


def test_a_refused_connection_is_a_failed_attempt():
    with socket.socket() as s:  # a port free now, closed again: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    error = infer(Server(f"http://127.0.0.1:{port}", {}, 2.0), "yolov11_nano", tiny_jpeg())
    assert error is not None and error.startswith("connection failed:"), error
