"""COCO evaluation: the served eval variant's mAP on the labelled coco128 images, by Ultralytics'
metric code, within 0.3 points of `ultralytics val` on the same images and weights (both printed);
and the evaluator's scoring reproduces val's own mAP from val's own detections."""

import re
import subprocess

from conftest import COCO_IMAGES, MATCH_REPORT, YOLO_TRITON, weights_of

from yolo_triton.client.evaluate import labelled_images, score, ultralytics_val

MODEL = "yolov11_nano_eval"


def _numbers(line: str) -> tuple[float, float]:
    found = re.search(r"mAP50-95 ([+-]?[\d.]+)\s+mAP50 ([+-]?[\d.]+)", line)
    return float(found.group(1)), float(found.group(2))


def test_served_map_is_ultralytics_val_map(triton):
    run = subprocess.run(
        [
            str(YOLO_TRITON),
            "eval",
            COCO_IMAGES,
            "--model",
            MODEL,
            "--url",
            triton.grpc_url,
            "--weights",
            weights_of(MODEL),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    ours, theirs, difference = run.stdout.strip().splitlines()[-3:]
    MATCH_REPORT.extend([f"eval: {ours}", f"eval: {theirs}", f"eval: {difference}"])
    assert ours.startswith(f"{MODEL} served at") and "128 images, 929 instances" in ours
    assert theirs.startswith("ultralytics val yolo11n.pt (rect=False)")
    delta_map, _ = _numbers(difference)
    assert abs(delta_map) <= 0.3, run.stdout
    assert abs(_numbers(ours)[0] - _numbers(theirs)[0] - delta_map) < 0.011


def test_scoring_reproduces_vals_map_from_vals_detections():
    images = labelled_images(COCO_IMAGES)
    val = ultralytics_val(weights_of("yolov8_nano_eval"), images, "yolov8_nano_eval")
    from ultralytics import YOLO

    names = tuple(YOLO(str(weights_of("yolov8_nano_eval"))).names.values())
    rescored = score([val.predictions[i.name] for i in images], images, names)
    MATCH_REPORT.append(f"eval: val's own yolov8n detections rescored: {rescored} vs val's {val.scores}")
    assert abs(rescored.map50_95 - val.scores.map50_95) <= 0.001 and abs(rescored.map50 - val.scores.map50) <= 0.001
