"""The `yolo-triton` command, as installed by the package, against the real server: JSON lines and
CSV that parse, one answer per image in order, a bad file reported without losing the others,
annotated images with boxes where the detections are, exit statuses, and the client's own
distributions (`pip install .`) being enough to detect."""

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import CUSTOM_MODEL, YOLO_TRITON, pyproject, ultralytics_assets
from only_distributions import command

from yolo_triton.preprocessing import decode

CUSTOM_NAMES = ("pedestrian", "vehicle", "pet")  # tests/fixtures/custom_weights.py


def yolo_triton(*args):
    return subprocess.run([str(YOLO_TRITON), *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def folder(test_images, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_photos")
    for path in test_images[:6]:
        shutil.copy2(path, folder)
    (folder / "zz_truncated.jpg").write_bytes(test_images[0].read_bytes()[:300])
    return folder


def test_jsonl_with_annotated_images(triton, folder, tmp_path):
    run = yolo_triton("detect", folder, "--url", triton.grpc_url, "--save", tmp_path / "annotated")
    assert run.returncode == 1, run.stderr  # one image was refused
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["image"] for line in lines] == [str(p) for p in sorted(folder.iterdir())]
    bad = lines[-1]
    assert bad["detections"] == [] and "zz_truncated.jpg" in run.stderr and bad["error"] in run.stderr
    assert all("error" not in line for line in lines[:-1]) and sum(len(line["detections"]) for line in lines) > 10

    saved = sorted((tmp_path / "annotated").iterdir())
    assert [p.name for p in saved] == [f"{Path(line['image']).stem}.jpg" for line in lines[:-1]]
    for line, annotated_path in zip(lines, saved):
        original = decode(Path(line["image"]).read_bytes()).astype(int)
        annotated = cv2.imread(str(annotated_path)).astype(int)
        assert annotated.shape == original.shape
        changed = np.abs(annotated - original).max(axis=2) > 60
        near_boxes = np.zeros_like(changed)
        for d in line["detections"]:
            x1, y1, x2, y2 = (int(round(v)) for v in d["box"])
            # each box is drawn: its top edge differs from the photo along most of its length
            assert changed[max(y1 - 1, 0) : y1 + 2, x1 : x2 + 1].any(axis=0).mean() > 0.8, (annotated_path, d)
            near_boxes[max(y1 - 40, 0) : y2 + 3, max(x1 - 3, 0) : x2 + 200] = True  # the box and its label
        assert changed[~near_boxes].mean() < 0.01, annotated_path  # and nothing else is


def test_csv_over_http(triton, folder, tmp_path):
    out = tmp_path / "detections.csv"
    run = yolo_triton(
        "detect",
        f"{folder}/0*.jpg",
        "--protocol",
        "http",
        "--url",
        triton.http_url,
        "--format",
        "csv",
        "--output",
        out,
        "--batch-size",
        "2",
        "--concurrency",
        "2",
    )
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == ["image", "class_id", "class_name", "score", "x1", "y1", "x2", "y2", "error"]
    assert sorted({r["image"] for r in rows}) == sorted(str(p) for p in folder.glob("0*.jpg"))
    for r in rows:
        if r["class_id"]:
            assert float(r["x1"]) <= float(r["x2"]) and float(r["y1"]) <= float(r["y2"]) and 0 < float(r["score"]) <= 1


def test_exit_status_2_when_nothing_can_be_detected(triton, folder):
    unknown = yolo_triton("detect", folder, "--url", triton.grpc_url, "--model", "yolov99_giant")
    assert unknown.returncode == 2 and "'yolov99_giant' is not served" in unknown.stderr and not unknown.stdout
    missing = yolo_triton("detect", folder / "nowhere.jpg", "--url", triton.grpc_url)
    assert missing.returncode == 2 and "no image file, folder or glob match" in missing.stderr


def test_a_models_own_class_names(triton, test_images, tmp_path):
    """The custom model's names (from its weights, published by the server) in the JSON, the CSV
    and the drawn labels; no COCO name."""
    from yolo_triton.client.annotate import annotate
    from yolo_triton.client.async_detector import Detection

    photos = test_images[:12]
    run = yolo_triton(
        "detect", *photos, "--model", CUSTOM_MODEL, "--url", triton.grpc_url, "--save", tmp_path / "drawn"
    )
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    found = [d for line in lines for d in line["detections"]]
    assert (
        found
        and {d["class_name"] for d in found} <= set(CUSTOM_NAMES)
        and "pedestrian" in {d["class_name"] for d in found}
    )
    assert all(d["class_name"] == CUSTOM_NAMES[d["class_id"]] for d in found)
    run = yolo_triton(
        "detect", *photos, "--model", CUSTOM_MODEL, "--url", triton.http_url, "--protocol", "http", "--format", "csv"
    )
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    assert sorted((r["class_name"], r["class_id"]) for r in rows if r["class_name"]) == sorted(
        (d["class_name"], str(d["class_id"])) for d in found
    )
    coco = {0: "person", 1: "car", 2: "dog"}  # what the 3 classes are called in the COCO model they came from
    for line in (line for line in lines if line["detections"]):  # the drawn labels are these names, not COCO's
        drawn = cv2.imread(str(tmp_path / "drawn" / f"{Path(line['image']).stem}.jpg")).astype(int)

        def drawn_with(names):  # the drawing of the JSON's detections (rounded) under these names, encoded alike
            found = tuple(
                Detection(d["class_id"], names[d["class_id"]], d["score"], tuple(d["box"])) for d in line["detections"]
            )
            return cv2.imdecode(
                cv2.imencode(".jpg", annotate(Path(line["image"]).read_bytes(), found))[1], cv2.IMREAD_COLOR
            ).astype(int)

        ours, theirs = np.abs(drawn - drawn_with(CUSTOM_NAMES)).mean(), np.abs(drawn - drawn_with(coco)).mean()
        assert ours * 10 < theirs, (line["image"], ours, theirs)


def test_the_client_alone_detects(triton, tmp_path):
    """`pip install .` (numpy, tritonclient, tqdm, nothing else importable) detects;
    --save, which draws with the [draw] extra, and the gateway ([gateway]) say so in one line instead of a
    traceback."""
    client_only = pyproject()["dependencies"]
    bus = ultralytics_assets() / "bus.jpg"
    cli = ("run", "yolo_triton.client.cli", "detect", "--url", triton.grpc_url, "--model", "yolov8_nano", str(bus))
    run = subprocess.run(command(client_only, *cli), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "bus" in {d["class_name"] for d in json.loads(run.stdout)["detections"]}  # the official yolov8n

    save = subprocess.run(
        command(client_only, *cli, "--save", str(tmp_path / "drawn")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert save.returncode == 2 and not save.stdout, save.stderr[-3000:]
    assert save.stderr.strip().splitlines() == [
        "yolo-triton: error: --save draws with OpenCV and Pillow (cv2 is missing):"
        ' in the checkout: pip install ".[draw]"'
    ]
    gateway = ("run", "yolo_triton.client.cli", "gateway", "--url", triton.grpc_url)
    alone = subprocess.run(command(client_only, *gateway), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert alone.returncode == 2 and alone.stderr.strip().splitlines() == [
        "yolo-triton: error: the gateway runs on FastAPI and uvicorn (uvicorn is missing):"
        ' in the checkout: pip install ".[gateway]"'
    ], alone.stderr[-3000:]
