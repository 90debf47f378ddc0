"""README's code and tables are true: its tritonclient snippet runs against the real server, and
its variant table is the contract's."""

import re

import numpy as np

from yolo_triton.contract import VARIANTS
from yolo_triton.repository import ROOT

from conftest import ultralytics_assets

README = (ROOT / "README.md").read_text()


def test_readme_python_snippet_runs(triton, monkeypatch):
    (snippet,) = re.findall(r"```python\n(.*?)```", README, re.S)
    monkeypatch.chdir(ultralytics_assets())  # the snippet opens bus.jpg and zidane.jpg
    scope = {}
    exec(snippet.replace("127.0.0.1:8000", triton.http_url), scope)
    assert scope["result"].as_numpy("num_dets").shape == (2, 1)
    assert scope["boxes"].shape[1] == 4 and scope["scores"].dtype == np.float32


def test_readme_variant_table_is_the_contract():
    rows = re.findall(r"^\| `(\w+)` \| (\S+) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| (\d+) \| ([\d, ]+) \|$", README, re.M)
    table = {r[0]: r[1:] for r in rows}
    assert set(table) == set(VARIANTS)
    for name, v in VARIANTS.items():
        assert table[name] == (v.weights, str(v.imgsz), str(v.max_detections), str(v.conf), str(v.iou),
                               str(v.max_batch_size), ", ".join(map(str, v.preferred_batch_sizes)))
