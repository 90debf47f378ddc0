"""How the client reaches Triton, parsed once for the Python client, the `yolo-triton` command and
the gateway: the address, the protocol, TLS, and the headers sent with every request.

    connect("127.0.0.1:8001")                                    # gRPC, no TLS (host:port alone)
    connect("grpcs://triton.example.com", root_certificates="ca.pem")   # gRPC over TLS, port 443
    connect("https://triton.example.com/triton")                 # HTTP over TLS (a proxy in front)

A URL's scheme says the protocol and whether TLS is used: grpc://, grpcs://, http://, https://.
Without a port: 443 with TLS, Triton's own without (8001 gRPC, 8000 HTTP). `root_certificates`, a
PEM file, verifies a certificate no system CA signed (a self-signed one).

Headers go with every request of either protocol; YOLO_TRITON_HEADERS holds more (NAME=VALUE,
comma-separated), under those given. Triton's restricted-API option reads a header NAME over HTTP
but triton-grpc-protocol-NAME over gRPC, so over gRPC each header is also sent under that prefix:
one setting serves both protocols.
"""

from __future__ import annotations

import importlib
import os
import re
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_URLS = {"grpc": "127.0.0.1:8001", "http": "127.0.0.1:8000"}
SCHEMES = {"grpc": ("grpc", False), "grpcs": ("grpc", True), "http": ("http", False), "https": ("http", True)}
TLS_PORT = 443
HEADERS_ENV = "YOLO_TRITON_HEADERS"
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"  # where Triton's gRPC restricted protocols look for a header
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")  # an HTTP token, lowercase (gRPC takes no other)


def add_header_option(parser, help: str = "sent with every request") -> None:
    """--header NAME=VALUE (repeatable) on an argparse parser: the yolo-triton commands and the canary."""
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"{help} (repeatable; also {HEADERS_ENV}=NAME=VALUE,..., better for secrets)",
    )


def tritonclient_module(protocol: str, aio: bool = False):
    """tritonclient's module of one protocol, blocking or asyncio."""
    if protocol not in DEFAULT_URLS:
        raise ValueError(f"protocol must be grpc or http, not {protocol!r}")
    return importlib.import_module(f"tritonclient.{protocol}{'.aio' if aio else ''}")


def parse_headers(headers: Mapping[str, str] | Iterable[str]) -> dict[str, str]:
    """Headers from a mapping or from NAME=VALUE strings; names lowercased (HTTP ignores their case).
    Errors never quote a value: it may be a key."""
    if isinstance(headers, str):
        headers = [headers]
    if isinstance(headers, Mapping):
        pairs = [(name, "=", value) for name, value in headers.items()]
    else:
        pairs = [text.partition("=") for text in headers]
    parsed = {}
    for name, equals, value in pairs:
        name = name.strip().lower()
        if not equals:
            raise ValueError("a header is NAME=VALUE: one has no '='")
        if not _HEADER_NAME.fullmatch(name) or any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name!r}: NAME must be a header name, VALUE one line")
        parsed[name] = value.strip()
    return parsed


def environment_headers() -> dict[str, str]:
    """The headers of YOLO_TRITON_HEADERS (NAME=VALUE,NAME=VALUE)."""
    text = os.environ.get(HEADERS_ENV, "")
    try:
        return parse_headers(pair for pair in text.split(",") if pair.strip())
    except ValueError as e:
        raise ValueError(f"{HEADERS_ENV}: {e}") from None


class _SendHeaders:
    """A tritonclient plugin: adds the headers to every request the client makes."""

    def __init__(self, headers: dict[str, str]):
        self.headers = headers

    def __call__(self, request) -> None:
        request.headers.update(self.headers)


@dataclass(frozen=True)
class Connection:
    address: str  # host:port as tritonclient takes it (HTTP: a path may follow, for a proxy)
    protocol: str = "grpc"
    tls: bool = False
    root_certificates: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def url(self) -> str:
        """The address for messages; with its scheme when it uses TLS."""
        return f"{self.protocol}s://{self.address}" if self.tls else self.address

    def request_headers(self) -> dict[str, str]:
        """What goes with each request: the headers, over gRPC also under Triton's gRPC prefix."""
        sent = dict(self.headers)
        if self.protocol == "grpc":
            sent.update({GRPC_HEADER_PREFIX + n: v for n, v in self.headers if not n.startswith(GRPC_HEADER_PREFIX)})
        return sent

    def client(self):
        """A tritonclient asyncio client of this server, with TLS and the headers."""
        module = tritonclient_module(self.protocol, aio=True)
        if self.protocol == "grpc":
            client = module.InferenceServerClient(self.address, ssl=self.tls, root_certificates=self.root_certificates)
        else:
            context = ssl.create_default_context(cafile=self.root_certificates) if self.tls else None
            client = module.InferenceServerClient(self.address, ssl=self.tls, ssl_context=context)
        if self.headers:
            client.register_plugin(_SendHeaders(self.request_headers()))
        return client


def connect(
    url: str | Connection | None = None,
    protocol: str | None = None,
    root_certificates: str | os.PathLike | None = None,
    headers: Mapping[str, str] | Iterable[str] | None = None,
) -> Connection:
    """The connection that a URL (or host:port), a protocol (else the URL's, else gRPC), root
    certificates and headers (over YOLO_TRITON_HEADERS's) describe. Raises ValueError for a
    contradiction or a malformed part."""
    if isinstance(url, Connection):
        if protocol or root_certificates or headers:
            raise ValueError("give a Connection, or a URL with its options, not both")
        return url
    scheme, has_scheme, rest = (url or "").rpartition("://")
    tls = False
    if has_scheme:
        if scheme.lower() not in SCHEMES:
            raise ValueError(f"{url}: the scheme must be one of {', '.join(s + '://' for s in SCHEMES)}")
        implied, tls = SCHEMES[scheme.lower()]
        if protocol and protocol != implied:
            raise ValueError(f"{url} is for {implied}, not {protocol}")
        protocol = implied
    protocol = protocol or "grpc"
    if protocol not in DEFAULT_URLS:
        raise ValueError(f"protocol must be grpc or http, not {protocol!r}")
    if root_certificates and not tls:
        raise ValueError(f"root certificates are for TLS: give the server as {protocol}s://HOST:PORT")
    parts = urlsplit(f"//{rest or DEFAULT_URLS[protocol]}")
    if not parts.hostname or parts.query or parts.fragment or (parts.path.strip("/") and protocol == "grpc"):
        raise ValueError(f"{url}: not a server address (HOST:PORT{', then a path' if protocol == 'http' else ''})")
    port = parts.port or (TLS_PORT if tls else urlsplit(f"//{DEFAULT_URLS[protocol]}").port)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return Connection(
        address=f"{host}:{port}{parts.path.rstrip('/')}",
        protocol=protocol,
        tls=tls,
        root_certificates=os.fspath(root_certificates) if root_certificates else None,
        headers=tuple({**environment_headers(), **parse_headers(headers or ())}.items()),
    )
