"""Exposure: the embedded server listens on 127.0.0.1 only, and the restricted-API flags the Helm
chart passes (production) are accepted by this very Triton and refuse the repository, shared-memory,
logging and trace APIs to a request without the admin header, over HTTP and gRPC, while inference
and health stay open."""

import socket

import httpx
import pytest
import tritonclient.grpc as grpcclient
import yaml

from yolo_triton.repository import ROOT
from yolo_triton.tritonserver import HOST, TritonServer, free_ports

HEADER, KEY = "triton-admin-key", "s3cret"


def chart_restricted_args() -> list[str]:
    """The restricted-API arguments exactly as the chart renders them, with the key filled in."""
    template = (ROOT / "deploy/helm/yolo-triton/templates/deployment.yaml").read_text()
    lines = [line.strip()[2:] for line in template.splitlines() if "restricted-" in line]
    header = yaml.safe_load((ROOT / "deploy/helm/yolo-triton/values.yaml").read_text())["restrictedApi"]["header"]
    return [a.replace("{{ .Values.restrictedApi.header }}", header).replace("$(TRITON_ADMIN_KEY)", KEY) for a in lines]


def test_embedded_server_binds_loopback_only(triton):
    assert HOST == "127.0.0.1"
    assert f"--http-address={HOST}" in triton.command() and f"--grpc-address={HOST}" in triton.command()
    import psutil

    outward = [
        a.address
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family == socket.AF_INET and not a.address.startswith("127.")
    ]
    if not outward:
        pytest.skip("no non-loopback address on this machine")
    for address in outward:
        for port in (triton.http_port, triton.grpc_port, triton.metrics_port):
            with pytest.raises(OSError):  # nothing listens there: refused
                socket.create_connection((address, port), timeout=2)


@pytest.fixture(scope="module")
def restricted(tmp_path_factory):
    repo = tmp_path_factory.mktemp("restricted_repo")  # no models: the APIs are what is tested
    build = tmp_path_factory.mktemp("restricted_build")
    # the admin group's two flags (the inference key's, templated from a Secret, are tested elsewhere)
    args = [a for a in chart_restricted_args() if HEADER in a]
    assert len(args) == 2 and args[0].startswith("--http-restricted-api=") and HEADER in args[0]
    server = TritonServer(repo, build, *free_ports(3), log=build / "tritonserver.log", extra_args=tuple(args))
    server.start()
    yield server
    server.stop()


def test_restricted_apis_need_the_admin_header(restricted):
    base = f"http://{restricted.http_url}"
    assert httpx.get(f"{base}/v2/health/ready").status_code == 200
    assert httpx.get(f"{base}/v2").status_code == 200  # server metadata stays open
    for method, path in (
        ("POST", "/v2/repository/index"),
        ("POST", "/v2/repository/models/x/load"),
        ("GET", "/v2/systemsharedmemory/status"),
        ("GET", "/v2/logging"),
        ("GET", "/v2/trace/setting"),
    ):
        refused = httpx.request(method, f"{base}{path}")
        assert refused.status_code == 403 and "restricted" in refused.text.lower(), (path, refused.text)
    assert httpx.post(f"{base}/v2/repository/index", headers={HEADER: KEY}).status_code == 200

    client = grpcclient.InferenceServerClient(restricted.grpc_url)
    assert client.is_server_ready()
    with pytest.raises(Exception, match="(?i)restricted|permission|unavailable"):
        client.get_model_repository_index()
    # over gRPC, Triton expects the header with a prefix of its own
    assert client.get_model_repository_index(headers={f"triton-grpc-protocol-{HEADER}": KEY}) is not None
