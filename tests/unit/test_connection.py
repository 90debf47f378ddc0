"""How the client reads a server's URL and its headers (yolo_triton/client/connection.py): host:port
or a scheme that says the protocol and TLS, the default ports, headers given and from
YOLO_TRITON_HEADERS, and one clear ValueError for each contradiction or malformed part
(tests/L0_client/test_secure_connection.py connects for real)."""

import pytest

from yolo_triton.client.connection import DEFAULT_URLS, Connection, connect
from yolo_triton.tritonserver import inference_key_args


@pytest.fixture(autouse=True)
def no_environment_headers(monkeypatch):
    monkeypatch.delenv("YOLO_TRITON_HEADERS", raising=False)


@pytest.mark.parametrize(
    "url, protocol, expected",
    [
        (None, None, Connection(DEFAULT_URLS["grpc"], "grpc")),
        (None, "http", Connection(DEFAULT_URLS["http"], "http")),
        ("triton:9001", None, Connection("triton:9001", "grpc")),
        ("triton", "http", Connection("triton:8000", "http")),
        ("grpc://triton", None, Connection("triton:8001", "grpc")),
        ("grpcs://triton.example.com", None, Connection("triton.example.com:443", "grpc", tls=True)),
        ("GRPCS://Triton:8443", "grpc", Connection("triton:8443", "grpc", tls=True)),
        ("https://example.com/triton/", None, Connection("example.com:443/triton", "http", tls=True)),
        ("http://[::1]:8000", None, Connection("[::1]:8000", "http")),
    ],
)
def test_urls(url, protocol, expected):
    assert connect(url, protocol) == expected
    assert connect(expected) is expected


def test_tls_url_and_root_certificates():
    connection = connect("grpcs://triton:8443", root_certificates="ca.pem")
    assert connection.tls and connection.root_certificates == "ca.pem"
    assert connection.url == "grpcs://triton:8443"  # what messages name
    assert connect("triton:8001").url == "triton:8001"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"url": "ftp://triton"}, "scheme must be one of grpc://, grpcs://, http://, https://"),
        ({"url": "https://triton", "protocol": "grpc"}, "is for http, not grpc"),
        ({"url": "triton:8001", "root_certificates": "ca.pem"}, "root certificates are for TLS"),
        ({"url": "http://triton", "root_certificates": "ca.pem"}, "give the server as https://HOST:PORT"),
        ({"url": "grpc://triton:8001/v2"}, "not a server address"),
        ({"url": "triton:8001?x=1"}, "not a server address"),
        ({"url": "triton:port"}, "Port could not be cast"),
        ({"protocol": "ws"}, "protocol must be grpc or http"),
        ({"url": Connection("triton:1"), "protocol": "http"}, "not both"),
    ],
)
def test_contradictions_and_malformed_urls(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("?", r"\?")):
        connect(**kwargs)


def test_headers_given_and_from_the_environment(monkeypatch):
    monkeypatch.setenv("YOLO_TRITON_HEADERS", "X-Team=vision, triton-inference-key=from-env")
    connection = connect("triton:8001", headers=["Triton-Inference-Key=a=b:c", "x-empty="])
    assert dict(connection.headers) == {"x-team": "vision", "triton-inference-key": "a=b:c", "x-empty": ""}
    # over gRPC Triton's restricted protocols read triton-grpc-protocol-NAME: both names are sent
    assert connection.request_headers()["triton-grpc-protocol-triton-inference-key"] == "a=b:c"
    assert connection.request_headers()["triton-inference-key"] == "a=b:c"
    over_http = connect("http://triton", headers={"triton-inference-key": "k"})
    assert over_http.request_headers() == {"x-team": "vision", "triton-inference-key": "k"}
    prefixed = connect(headers={"triton-grpc-protocol-k": "v"}).request_headers()  # Triton's gRPC form: as given
    assert prefixed["triton-grpc-protocol-k"] == "v" and not any(n.count("triton-grpc-protocol-") > 1 for n in prefixed)


@pytest.mark.parametrize(
    "headers, message",
    [
        (["s3cret"], "one has no '='"),
        (["bad name=s3cret"], "header 'bad name': NAME must be a header name"),
        ({"x-key": "line\nbreak"}, "VALUE one line"),
    ],
)
def test_malformed_headers_never_quote_a_value(headers, message):
    with pytest.raises(ValueError, match=message) as error:
        connect(headers=headers)
    assert "s3cret" not in str(error.value) and "break" not in str(error.value)


def test_malformed_environment_headers_are_named(monkeypatch):
    monkeypatch.setenv("YOLO_TRITON_HEADERS", "a=1,oops")
    with pytest.raises(ValueError, match="YOLO_TRITON_HEADERS: a header is NAME=VALUE"):
        connect()


def test_inference_key_server_flags():
    assert inference_key_args("Triton-Inference-Key=a=b:c") == (
        "--http-restricted-api=inference:triton-inference-key=a=b:c",
        "--grpc-restricted-protocol=inference:triton-inference-key=a=b:c",
    )
    with pytest.raises(ValueError, match="must not be empty"):
        inference_key_args("triton-inference-key=")
