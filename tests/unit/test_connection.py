"""How the client reads a server's URL (yolo_triton/client/connection.py): host:port or a scheme that
says the protocol and TLS, the default ports, and one clear ValueError for each contradiction
(tests/L0_client/test_secure_connection.py connects for real)."""

import pytest

from yolo_triton.client.connection import DEFAULT_URLS, Connection, connect


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
