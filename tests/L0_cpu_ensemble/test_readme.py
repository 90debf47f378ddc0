"""README's code and tables are true: its Python snippets run against the real server, and its
variant table is the contract's."""

import re

import pytest
from conftest import ultralytics_assets

from yolo_triton.client.async_detector import DEFAULT_URLS
from yolo_triton.contract import VARIANTS
from yolo_triton.repository import ROOT

README = (ROOT / "README.md").read_text()


SNIPPETS = re.findall(r"```python\n(.*?)```", README, re.S)


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_readme_python_snippets_run(snippet, triton, monkeypatch, capsys):
    monkeypatch.chdir(ultralytics_assets())  # the snippets open bus.jpg and zidane.jpg
    monkeypatch.setitem(DEFAULT_URLS, "http", triton.http_url)  # the client's defaults: this server
    monkeypatch.setitem(DEFAULT_URLS, "grpc", triton.grpc_url)
    scope = {}
    exec(snippet.replace("127.0.0.1:8000", triton.http_url).replace("127.0.0.1:8001", triton.grpc_url), scope)
    assert capsys.readouterr().out.strip(), "each snippet shows what it got"


def test_readme_variant_table_is_the_contract():
    rows = re.findall(
        r"^\| `(\w+)` \| (\S+) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| (\d+) \| ([\d, ]+) \|$", README, re.M
    )
    table = {r[0]: r[1:] for r in rows}
    assert set(table) == set(VARIANTS)
    for name, v in VARIANTS.items():
        assert table[name] == (
            v.weights,
            str(v.imgsz),
            str(v.max_detections),
            str(v.conf),
            str(v.iou),
            str(v.max_batch_size),
            ", ".join(map(str, v.preferred_batch_sizes)),
        )
