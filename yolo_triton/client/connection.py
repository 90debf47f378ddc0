"""How the client reaches Triton, parsed once for the Python client, the `yolo-triton` command and
the gateway: the address, the protocol and TLS.

    connect("127.0.0.1:8001")                                    # gRPC, no TLS (host:port alone)
    connect("grpcs://triton.example.com", root_certificates="ca.pem")   # gRPC over TLS, port 443
    connect("https://triton.example.com/triton")                 # HTTP over TLS (a proxy in front)

A URL's scheme says the protocol and whether TLS is used: grpc://, grpcs://, http://, https://.
Without a port: 443 with TLS, Triton's own without (8001 gRPC, 8000 HTTP). `root_certificates`, a
PEM file, verifies a certificate no system CA signed (a self-signed one).
"""

from __future__ import annotations

import importlib
import os
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_URLS = {"grpc": "127.0.0.1:8001", "http": "127.0.0.1:8000"}
SCHEMES = {"grpc": ("grpc", False), "grpcs": ("grpc", True), "http": ("http", False), "https": ("http", True)}
TLS_PORT = 443


def tritonclient_module(protocol: str, aio: bool = False):
    """tritonclient's module of one protocol, blocking or asyncio."""
    if protocol not in DEFAULT_URLS:
        raise ValueError(f"protocol must be grpc or http, not {protocol!r}")
    return importlib.import_module(f"tritonclient.{protocol}{'.aio' if aio else ''}")


@dataclass(frozen=True)
class Connection:
    address: str  # host:port as tritonclient takes it (HTTP: a path may follow, for a proxy)
    protocol: str = "grpc"
    tls: bool = False
    root_certificates: str | None = None

    @property
    def url(self) -> str:
        """The address for messages; with its scheme when it uses TLS."""
        return f"{self.protocol}s://{self.address}" if self.tls else self.address

    def client(self):
        """A tritonclient asyncio client of this server, with TLS."""
        module = tritonclient_module(self.protocol, aio=True)
        if self.protocol == "grpc":
            client = module.InferenceServerClient(self.address, ssl=self.tls, root_certificates=self.root_certificates)
        else:
            context = ssl.create_default_context(cafile=self.root_certificates) if self.tls else None
            client = module.InferenceServerClient(self.address, ssl=self.tls, ssl_context=context)
        return client


def connect(
    url: str | Connection | None = None,
    protocol: str | None = None,
    root_certificates: str | os.PathLike | None = None,
) -> Connection:
    """The connection that a URL (or host:port), a protocol (else the URL's, else gRPC) and root
    certificates describe. Raises ValueError for a contradiction or a malformed part."""
    if isinstance(url, Connection):
        if protocol or root_certificates:
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
    )
