"""Here: benchmarks/results/h100/summary.json from the device runs' gpu_checks.json files.

    python3 tests/device/summary.py benchmarks/results/h100/run3_final.json [FP32_RUN.json]

All figures of the summary come from the first file (one run, one machine); the second adds the FP32
graph's accuracy, measured with the same code in an earlier run.
"""

import json
import sys
from pathlib import Path


def best(rows, path):
    found = [r for r in rows if r["path"] == path and "images_per_s" in r]
    return max(found, key=lambda r: r["images_per_s"])


def main():
    run = json.loads(Path(sys.argv[1]).read_text())
    rows = run["bench"]["rows"]
    ensemble = best(rows, "ensemble")
    preprocess = best(rows, "stage: preprocess (GPU)")
    detector = best(rows, "stage: detector (ONNX Runtime GPU, input in CUDA shared memory)")
    c1 = next(r for r in rows if r["path"] == "ensemble" and r["concurrency"] == 1)
    ultralytics = max(run["ultralytics"]["batch_1_images_per_s"], run["ultralytics"]["batch_32_images_per_s"])
    classical = best(run["classical"]["rows"], "classical (client)")
    ensemble_same_client = best(run["classical"]["rows"], "ensemble (client)")
    match, soak = run["ensemble"]["fp16"], run["soak"]
    slower_stage = min(preprocess["images_per_s"], detector["images_per_s"])
    summary = {
        "date": run["date"],
        "gpu": run["gpu"].split(",")[0],
        "precision": "fp16",
        "ensemble_img_s": ensemble["images_per_s"],
        "ensemble_concurrency": ensemble["concurrency"],
        "ensemble_p50_ms_c1": c1["p50_ms"],
        "preprocess_alone_img_s": preprocess["images_per_s"],
        "detector_alone_img_s": detector["images_per_s"],
        "detector_alone_how": "perf_analyzer --shared-memory=cuda: each request's images and letterbox in CUDA shared "
        "memory, so the detector receives GPU tensors as it does from preprocess",
        "ultralytics_img_s": ultralytics,
        "ultralytics": run["ultralytics"],
        "classical_img_s": classical["images_per_s"],
        "ensemble_same_load_generator_img_s": ensemble_same_client["images_per_s"],
        "match": {"reference": match["reference"], "matched": match["matched"], "extra": match["extra"]},
        "soak": {
            "requests": soak["requests"],
            "wrong": len(soak["wrong"]),
            "gpu_memory_growth_pct": round(soak["growth_percent"]["gpu"], 2),
            "server_rss_growth_pct": round(soak["growth_percent"]["server_rss"], 2),
            "stubs_rss_growth_pct": round(soak["growth_percent"]["stubs_rss"], 2),
        },
        "settings": {"preprocess_instances": 4, "detector_instances": 1, "prefer_nhwc": 0, "max_queue_delay_us": 0},
        "ratios": {
            "ensemble_over_ultralytics": round(ensemble["images_per_s"] / ultralytics, 2),
            "ensemble_over_slower_stage": round(ensemble["images_per_s"] / slower_stage, 3),
            "ensemble_over_classical": round(ensemble["images_per_s"] / classical["images_per_s"], 2),
            "ensemble_over_classical_same_load_generator": round(
                ensemble_same_client["images_per_s"] / classical["images_per_s"], 2
            ),
        },
        "commands": run["bench"]["commands"],
    }
    if len(sys.argv) > 2:
        fp32 = json.loads(Path(sys.argv[2]).read_text())["ensemble"]["fp32"]
        summary["match_fp32"] = {"reference": fp32["reference"], "matched": fp32["matched"], "extra": fp32["extra"]}
    out = Path(sys.argv[1]).with_name("summary.json")
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
