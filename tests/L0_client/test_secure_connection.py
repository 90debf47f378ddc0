"""A Triton behind TLS, reached by the Python client, the `yolo-triton` command and the gateway:
gRPC over Triton's own TLS (--grpc-use-ssl, a self-signed certificate made here with openssl) and
HTTPS through a TLS-terminating proxy (Triton 2.51's HTTP endpoint has no TLS of its own). Each
gives the detections the plain endpoint gives; without TLS, or without the certificate that
verifies the server, each fails at once and says why."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import YOLO_TRITON, ultralytics_assets
from fastapi.testclient import TestClient
from matching import Detections, unpaired

from yolo_triton.client import ServerUnavailable, detect
from yolo_triton.client.cli import _connection, parser
from yolo_triton.client.connection import connect
from yolo_triton.client.gateway import create_app
from yolo_triton.tritonserver import HOST, TritonServer, free_ports

MODEL = "yolov11_nano"


def served_alone(model_repository: Path, folder: Path, *extra_args: str) -> TritonServer:
    """A server of its own for MODEL only (a copy of the session's repository), with these flags."""
    for name in ("preprocess", MODEL, f"{MODEL}_detector"):
        shutil.copytree(model_repository / name, folder / "repo" / name)
    server = TritonServer(
        folder / "repo", folder / "build", *free_ports(3), log=folder / "tritonserver.log", extra_args=extra_args
    )
    try:
        return server.start()
    except Exception:
        print((folder / "tritonserver.log").read_text()[-5000:])
        raise


def same(found, expected) -> bool:
    """The same detections (the client's results, or their JSON), image by image."""
    return len(found) == len(expected) and all(
        unpaired(Detections.from_client(getattr(f, "detections", f)), Detections.from_client(e.detections)) == 0
        for f, e in zip(found, expected)
    )


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    folder = tmp_path_factory.mktemp("certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    run = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    return cert, key


@pytest.fixture(scope="module")
def tls_server(model_repository, certificate, tmp_path_factory):
    """gRPC over TLS (the flags a deployment passes); its HTTP endpoint stays plain."""
    cert, key = certificate
    server = served_alone(
        model_repository,
        tmp_path_factory.mktemp("tls_server"),
        "--grpc-use-ssl=true",
        f"--grpc-server-cert={cert}",
        f"--grpc-server-key={key}",
    )
    yield server
    server.stop()


@contextmanager
def tls_proxy(port: int, certificate: tuple[Path, Path]):
    """A TLS-terminating TCP proxy to 127.0.0.1:port, as an ingress in front of Triton's HTTP is.
    Yields its own port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    loop = asyncio.new_event_loop()

    async def pipe(reader, writer):
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def forward(reader, writer):
        upstream_reader, upstream_writer = await asyncio.open_connection(HOST, port)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True)

    server = loop.run_until_complete(asyncio.start_server(forward, HOST, 0, ssl=context))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture(scope="module")
def photos(test_images) -> list[Path]:
    return [ultralytics_assets() / "bus.jpg", test_images[0]]


@pytest.fixture(scope="module")
def plain(tls_server, photos) -> list:
    """What the same server answers over its plain HTTP endpoint."""
    found = detect(photos, MODEL, tls_server.http_url, "http")
    assert all(r.ok and r.detections for r in found), found
    return found


def test_grpc_over_tls(tls_server, certificate, photos, plain):
    url = f"grpcs://{tls_server.grpc_url}"
    assert same(detect(photos, MODEL, url, root_certificates=certificate[0]), plain)
    localhost = f"grpcs://localhost:{tls_server.grpc_port}"  # the name the certificate gives
    assert same(detect(photos[:1], MODEL, localhost, root_certificates=certificate[0]), plain[:1])


def test_without_tls_or_the_certificate_fails_clearly(tls_server):
    with pytest.raises(ServerUnavailable, match=f"grpcs://{tls_server.grpc_url}"):  # says how to reach it
        detect([b"x"], MODEL, tls_server.grpc_url)
    with pytest.raises(ServerUnavailable, match="CERTIFICATE_VERIFY_FAILED"):  # no system CA signed it
        detect([b"x"], MODEL, f"grpcs://{tls_server.grpc_url}")


def test_https_through_a_tls_proxy(tls_server, certificate, photos, plain):
    with tls_proxy(tls_server.http_port, certificate) as port:
        url = f"https://127.0.0.1:{port}"
        assert same(detect(photos, MODEL, url, root_certificates=certificate[0]), plain)
        with pytest.raises(ServerUnavailable, match="(?i)certificate verify failed"):
            detect([b"x"], MODEL, url)
        with pytest.raises(ServerUnavailable):  # plain HTTP to a TLS port
            detect([b"x"], MODEL, f"http://127.0.0.1:{port}")


def test_command_over_tls(tls_server, certificate, photos, plain):
    def yolo_triton(*args):
        return subprocess.run([str(YOLO_TRITON), *map(str, args)], capture_output=True, text=True, timeout=300)

    url = f"grpcs://{tls_server.grpc_url}"
    run = yolo_triton("detect", photos[0], "--model", MODEL, "--url", url, "--root-certificates", certificate[0])
    assert run.returncode == 0, run.stderr
    assert same([json.loads(run.stdout)["detections"]], plain[:1])

    run = yolo_triton("detect", photos[0], "--model", MODEL, "--url", tls_server.grpc_url)
    assert run.returncode == 2 and f"grpcs://{tls_server.grpc_url}" in run.stderr, run.stderr
    run = yolo_triton("detect", photos[0], "--url", tls_server.grpc_url, "--root-certificates", certificate[0])
    assert run.returncode == 2 and "root certificates are for TLS" in run.stderr, run.stderr

    # the gateway takes the same options as detect
    args = parser().parse_args(["gateway", "--url", url, "--root-certificates", str(certificate[0])])
    assert _connection(args) == connect(url, root_certificates=certificate[0])


def test_gateway_over_tls(tls_server, certificate, photos, plain):
    with TestClient(create_app(f"grpcs://{tls_server.grpc_url}", root_certificates=certificate[0])) as gateway:
        assert gateway.get("/health").json() == {"status": "ready", "triton": f"grpcs://{tls_server.grpc_url}"}
        response = gateway.post(f"/predict/{MODEL}", files={"file": ("bus.jpg", photos[0].read_bytes())})
        assert response.status_code == 200, response.text
        assert same([response.json()["detections"]], plain[:1])
    with TestClient(create_app(tls_server.grpc_url)) as gateway:  # no TLS: 503, saying how to reach it
        response = gateway.post(f"/predict/{MODEL}", files={"file": ("bus.jpg", photos[0].read_bytes())})
        assert response.status_code == 503 and f"grpcs://{tls_server.grpc_url}" in response.json()["detail"]
