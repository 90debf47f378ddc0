"""`make test-data` (tests/fixtures/fetch_test_data.py): what it fetches is what the tests read, and
it fetches only what is missing. Its downloads are Ultralytics' own functions, stood in for here
(nothing is downloaded in tests)."""

from __future__ import annotations

import subprocess
import sys

import fetch_test_data
from conftest import ALL_SERVED, TEST_DATA

from yolo_triton.contract import VARIANTS
from yolo_triton.weights import ROOT


def test_the_test_data_folder_is_complete():
    assert fetch_test_data.missing(TEST_DATA) == []


def test_it_names_every_weights_file_the_served_models_use():
    used = {VARIANTS[n].weights for n in ALL_SERVED if n in VARIANTS}
    assert used <= set(fetch_test_data.TEST_WEIGHTS)


def test_check_says_what_an_empty_folder_lacks(tmp_path):
    run = subprocess.run(
        [sys.executable, "tests/fixtures/fetch_test_data.py", "--check"],
        cwd=ROOT,
        env={"YOLO_TEST_DATA": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert run.stdout.strip() == (
        f"test data in {tmp_path}: missing "
        + ", ".join(f"weights/{w}" for w in fetch_test_data.TEST_WEIGHTS)
        + ", coco128/images/train2017"
    )


def test_fetch_downloads_only_what_is_missing(tmp_path, monkeypatch):
    from ultralytics.utils import downloads

    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "yolo11n.pt").write_bytes(b"here already")
    asked = []

    def asset(path):
        asked.append(path.name)
        path.write_bytes(b"weights")

    def dataset(url, dir):
        asked.append(url)
        images = fetch_test_data.coco128_images(dir)
        images.mkdir(parents=True)
        for i in range(fetch_test_data.COCO128_IMAGES):
            (images / f"{i}.jpg").write_bytes(b"jpeg")

    monkeypatch.setattr(downloads, "attempt_download_asset", asset)
    monkeypatch.setattr(downloads, "download", dataset)
    fetched = fetch_test_data.fetch(tmp_path)
    assert asked == [*fetch_test_data.TEST_WEIGHTS[1:], fetch_test_data.COCO128_URL]
    assert fetched == [f"weights/{w}" for w in fetch_test_data.TEST_WEIGHTS[1:]] + ["coco128/images/train2017"]
    assert fetch_test_data.fetch(tmp_path) == []
