"""The arithmetic of the device step `multi_gpu` (tests/device/multi_gpu.py), on the CPU: the requests
it sends both servers, how it compares their answers, the scaling it reports, and what it reads from
Triton's log and nvidia-smi's output (samples of their text here; the step reads the real ones)."""

import sys
from pathlib import Path

import numpy as np
from matching import Detections

sys.path.insert(0, str(Path(__file__).parents[1] / "device"))
from multi_gpu import (  # noqa: E402
    answer_differences,
    instances_by_device,
    parse_gpu_query,
    scaling,
    utilisation,
    windows,
)


def test_windows_send_every_photo_in_several_full_requests():
    requests = windows(130, 128)
    assert len(requests) == 17 and all(len(r) == 128 for r in requests)
    counts = np.bincount(np.concatenate(requests), minlength=130)
    assert counts.min() >= 16  # each photo in 16 or 17 of them, at other rows


def _dets(score=0.9, x=10.0):
    return Detections(np.array([[x, 10, 50, 60]], np.float32), np.array([score], np.float32), np.array([3]))


def test_answer_differences_row_by_row():
    same = answer_differences([[_dets(), _dets(0.5)]], [[_dets(), _dets(0.5)]])
    assert same == {"answers": 2, "differing": 0, "unpaired_detections": 0, "first": []}
    moved = answer_differences([[_dets(), _dets(0.5)]], [[_dets(), _dets(0.5, x=11)]], [["a.jpg", "b.jpg"]])
    assert moved["differing"] == 1 and moved["unpaired_detections"] == 2
    assert moved["first"] == [{"request": 0, "row": 1, "photo": "b.jpg", "unpaired": 2}]


def test_scaling_takes_each_side_at_its_best():
    single = {"256": {"images_per_s": 1700.0}, "512": {"images_per_s": 1773.0}}
    multi = {"256": {"images_per_s": 3300.0}, "512": {"images_per_s": 3400.0}}
    report = scaling(single, multi, 2)
    assert report["single_img_s"] == 1773.0 and report["multi_img_s"] == 3400.0
    assert report["scaling"] == round(3400 / 1773, 3) and report["target_scaling"] == 1.8
    assert report["target_met"] is True and report["scaling_by_concurrency"]["256"] == round(3300 / 1700, 3)
    failed = scaling(single, {"256": {"error": "perf_analyzer failed"}}, 4)
    assert failed["multi_img_s"] is None and failed["scaling"] is None and failed["target_met"] is None


def test_instances_by_device_from_tritons_log():
    log = "\n".join(
        f"I1205 10:00:0{i}.000 1 python_be.cc:2289] TRITONBACKEND_ModelInstanceInitialize: {name} (GPU device {d})"
        for i, (name, d) in enumerate(
            [("preprocess_0_0", 0), ("preprocess_0_1", 1), ("preprocess_0_2", 0), ("yolov11_nano_detector_0_0", 1)]
        )
    )
    assert instances_by_device(log) == {
        "preprocess": {"GPU 0": 2, "GPU 1": 1},
        "yolov11_nano_detector": {"GPU 1": 1},
    }


def test_gpu_utilisation_from_nvidia_smi_samples():
    samples = [parse_gpu_query("0, 80, 30000\n1, 60, 29000\n"), parse_gpu_query("0, 100, 31000\n1, [N/A], 1\n")]
    assert samples[1] == [(0, 100.0, 31000.0)]
    assert utilisation(samples) == {
        "0": {"samples": 2, "mean_util_percent": 90.0, "max_util_percent": 100.0, "max_memory_mib": 31000.0},
        "1": {"samples": 1, "mean_util_percent": 60.0, "max_util_percent": 60.0, "max_memory_mib": 29000.0},
    }
