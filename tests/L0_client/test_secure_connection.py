"""A Triton behind TLS, or whose inference needs a key header, reached by the Python client, the
`yolo-triton` command and the gateway.

TLS: gRPC over Triton's own TLS (--grpc-use-ssl, a self-signed certificate made here with openssl)
and HTTPS through a TLS-terminating proxy (Triton 2.51's HTTP endpoint has no TLS of its own). Each
gives the detections the plain endpoint gives; without TLS, or without the certificate that
verifies the server, each fails at once and says why.

Key: Triton's restricted `inference` API group (tritonserver.inference_key_args, what make serve
passes for YOLO_TRITON_INFERENCE_KEY) beside the chart's admin group: without the header, or with
a wrong one, every client is refused at once with AccessDenied naming the header; with it (headers=,
--header, YOLO_TRITON_HEADERS) it is served, over both protocols."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import YOLO_TRITON, ultralytics_assets
from fastapi.testclient import TestClient
from matching import Detections, unpaired

from yolo_triton.client import AccessDenied, ServerUnavailable, UnknownModel, detect
from yolo_triton.client.cli import _connection, parser
from yolo_triton.client.connection import connect
from yolo_triton.client.gateway import create_app
from yolo_triton.tritonserver import HOST, TritonServer, free_ports, inference_key_args

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


HEADER, KEY = "triton-inference-key", "s3cret=:x"  # Triton splits its flag at the first ':' and '='
ADMIN = ("model-repository", "shared-memory", "logging", "trace")  # the Helm chart's admin group


@pytest.fixture(scope="module")
def keyed_server(model_repository, tmp_path_factory):
    """Inference restricted to the key header, the admin APIs to another (as the chart restricts them)."""
    admin = ",".join(ADMIN)
    server = served_alone(
        model_repository,
        tmp_path_factory.mktemp("keyed_server"),
        *inference_key_args(f"{HEADER}={KEY}"),
        f"--http-restricted-api={admin}:triton-admin-key=admin",
        f"--grpc-restricted-protocol={admin}:triton-admin-key=admin",
    )
    yield server
    server.stop()


def test_inference_needs_the_key(keyed_server, photos, monkeypatch):
    monkeypatch.delenv("YOLO_TRITON_HEADERS", raising=False)
    for protocol, url in (("grpc", keyed_server.grpc_url), ("http", keyed_server.http_url)):
        for headers in (None, {HEADER: "wrong"}):
            with pytest.raises(AccessDenied, match=f"expecting header '(triton-grpc-protocol-)?{HEADER}'"):
                detect(photos, MODEL, url, protocol, headers=headers)
        served = detect(photos, MODEL, url, protocol, headers=[f"{HEADER.upper()}={KEY}"])  # any case
        assert all(r.ok and r.detections for r in served), served
        if protocol == "grpc":
            expected = served
        assert same(served, expected)
        # the index of served models is the admin's: an unknown model is still named as such
        with pytest.raises(UnknownModel, match=r"'yolov99_giant' is not served at \S+$"):
            detect(photos, "yolov99_giant", url, protocol, headers={HEADER: KEY})

    monkeypatch.setenv("YOLO_TRITON_HEADERS", f"x-other=1,{HEADER}={KEY}")
    assert same(detect(photos[:1], MODEL, keyed_server.http_url, "http"), expected[:1])
    monkeypatch.setenv("YOLO_TRITON_HEADERS", f"{HEADER}=wrong")  # headers given win over the environment's
    assert same(detect(photos[:1], MODEL, keyed_server.grpc_url, headers={HEADER: KEY}), expected[:1])


def test_command_and_gateway_send_the_key(keyed_server, photos, monkeypatch):
    monkeypatch.delenv("YOLO_TRITON_HEADERS", raising=False)
    expected = detect(photos[:1], MODEL, keyed_server.grpc_url, headers={HEADER: KEY})

    def yolo_triton(*args, env=None):
        return subprocess.run(
            [str(YOLO_TRITON), "detect", photos[0], "--model", MODEL, "--url", keyed_server.grpc_url, *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )

    run = yolo_triton()
    assert run.returncode == 2 and "refused the request" in run.stderr and HEADER in run.stderr, run.stderr
    assert KEY not in run.stderr
    run = yolo_triton("--header", f"{HEADER}={KEY}")
    assert run.returncode == 0 and same([json.loads(run.stdout)["detections"]], expected), run.stderr
    run = yolo_triton(env={**os.environ, "YOLO_TRITON_HEADERS": f"{HEADER}={KEY}"})
    assert run.returncode == 0, run.stderr
    run = yolo_triton("--header", "no-equals-sign")
    assert run.returncode == 2 and "NAME=VALUE" in run.stderr, run.stderr

    upload = {"file": ("bus.jpg", photos[0].read_bytes())}
    with TestClient(create_app(keyed_server.grpc_url, headers={HEADER: KEY})) as gateway:
        response = gateway.post(f"/predict/{MODEL}", files=upload)
        assert response.status_code == 200 and same([response.json()["detections"]], expected), response.text
    with TestClient(create_app(keyed_server.http_url, "http")) as gateway:  # the gateway's own key is missing
        response = gateway.post(f"/predict/{MODEL}", files=upload)
        assert response.status_code == 503 and f"expecting header '{HEADER}'" in response.json()["detail"]


def test_canary_sends_the_key(keyed_server):
    """The liveness canary with the environment the Helm chart gives the Triton container
    (inferenceKey: YOLO_TRITON_HEADERS; the admin key: TRITON_ADMIN_KEY) passes; without the
    inference key its requests are refused and it fails, naming the header."""

    def canary(**env):
        base = {k: v for k, v in os.environ.items() if k != "YOLO_TRITON_HEADERS"}
        return subprocess.run(
            [sys.executable, "-m", "yolo_triton.canary", "--url", keyed_server.http_url, "--attempts", "1"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**base, "TRITON_ADMIN_KEY": "admin", **env},
        )

    keyed = canary(YOLO_TRITON_HEADERS=f"{HEADER}={KEY}")
    assert keyed.returncode == 0 and keyed.stderr == "", keyed.stderr
    refused = canary()
    assert refused.returncode == 1 and f"canary: {MODEL}: refused (a key to send?" in refused.stderr, refused.stderr
    assert f"expecting header '{HEADER}'" in refused.stderr and KEY not in refused.stderr
