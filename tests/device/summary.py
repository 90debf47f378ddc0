"""Here: benchmarks/results/<gpu>/summary.json from a device run's gpu_checks.json (its runtimes step).

    python3 tests/device/summary.py benchmarks/results/h100/run14_final.json [OTHER_RUNTIMES_RUN.json ...]
        [--soak-from=RUN.json]

Every figure of the summary comes from the first file (one run, one machine, one date; its `chosen`
runtime, else its first), the other runtimes of that run beside it; the second file adds another
run's runtimes (onnxruntime-gpu), measured with the same code on the same machine kind, beside it and
not in any ratio. What the run did not measure is null and named in `not_measured`. --soak-from takes
the soak from a later run (named in `soak.run`): the soak is in no ratio.
"""

import json
import sys
from pathlib import Path


def _levels(row: dict) -> dict:
    levels = sorted((k for k in row if k.isdigit()), key=int)
    return {
        c: {
            "img_s": row[c].get("images_per_s"),
            "p50_ms": row[c].get("p50_ms"),
            "p99_ms": row[c].get("p99_ms"),
            "errors": row[c].get("errors", "failed"),
        }
        for c in levels
    }


def _match(result: dict) -> dict:
    return {
        "reference": result["reference"],
        "reference_from": result.get("reference_from", "cpu fp32"),
        "matched": result["matched"],
        "extra": result["extra"],
    }


def main():
    soak_from = [a.partition("=")[2] for a in sys.argv[1:] if a.startswith("--soak-from=")]
    files = [a for a in sys.argv[1:] if not a.startswith("--soak-from=")]
    run = json.loads(Path(files[0]).read_text())
    measured = run.get("chosen", next(iter(run["runtimes"])))  # the runtime the summary is about
    row = run["runtimes"][measured]
    by_concurrency = _levels(row)
    best_level = max(by_concurrency, key=lambda c: by_concurrency[c]["img_s"] or 0)
    ensemble = by_concurrency[best_level]["img_s"]
    loop = {k: v for k, v in run["ultralytics"].items() if k.endswith("_images_per_s")}
    ultralytics = max(loop.values())
    bare = run["network"]["rows"]["64"]["network_cuda_graph_img_s"]
    soak = json.loads(Path(soak_from[0]).read_text())["soak"] if soak_from else run.get("soak")
    summary = {
        "date": run["date"],
        "gpu": run["gpu"].split(",")[0],
        "runtime": run.get("runtime", measured),
        "measured_as": measured,
        "precision": "fp16",
        "settings": {
            "preprocess_instances": int(run["settings"].split(",")[0]),
            "detector_instances": int(run["settings"].split(",")[1]),
            "max_queue_delay_us": 0,
        },
        "ensemble_img_s": ensemble,
        "ensemble_concurrency": int(best_level),
        "ensemble_p50_ms_c1": by_concurrency["1"]["p50_ms"],
        "ensemble_p99_ms_c1": by_concurrency["1"]["p99_ms"],
        "ensemble_by_concurrency": by_concurrency,
        "bare_network_img_s": bare,
        "bare_network_how": "yolo11n's network alone in PyTorch, FP16, channels_last, one CUDA graph for batch 64, "
        "input already in GPU memory, graph replays timed (tests/device/gpu_checks.py, step network)",
        "network_by_batch": run["network"]["rows"],
        "ultralytics_img_s": ultralytics,
        "ultralytics": run["ultralytics"],
        "match": _match(row["fp16"]),
        "match_fp32": _match(row["fp32"]) if "fp32" in row else None,
        "soak": None
        if not soak
        else {
            "run": Path(soak_from[0] if soak_from else files[0]).name,
            "requests": soak["requests"],
            "wrong": len(soak["wrong"]),
            "differing": soak["differing"],
            "seconds": soak["seconds"],
            "gpu_memory_growth_pct": round(soak["growth_percent"]["gpu"], 2),
            "server_rss_growth_pct": round(soak["growth_percent"]["server_rss"], 2),
            "stubs_rss_growth_pct": round(soak["growth_percent"]["stubs_rss"], 2),
            **{  # whose GPU memory grew, and which part of the server's RSS, where the run sampled them
                f"{k}_growth_pct": round(soak["growth_percent"][k], 2)
                for k in ("gpu_server", "gpu_stubs", "server_rss_anon", "server_rss_shmem")
                if k in soak["growth_percent"]
            },
        },
        "without_hardware_decoder": None
        if not run.get("decoders")
        else {"ensemble_by_concurrency": _levels(run["decoders"]["rows"]), "log": run["decoders"]["preprocess_log"]},
        "ratios": {
            "ensemble_over_ultralytics": round(ensemble / ultralytics, 2),
            "ensemble_over_bare_network": round(ensemble / bare, 3),
        },
        "not_measured": [
            name
            for name, present in (
                ("soak", soak),
                ("decoders (no hardware JPEG decoder)", run.get("decoders")),
                ("stages alone (preprocess, detector)", run.get("bench")),
            )
            if not present
        ],
        "commands": {"run": run["command"], "perf_analyzer": row["command"]},
    }
    summary["other_runtimes"] = {}
    for other in [run, *(json.loads(Path(f).read_text()) for f in files[1:])]:
        for name, r in other["runtimes"].items():
            if name != measured and name not in summary["other_runtimes"]:  # this run's first
                summary["other_runtimes"][name] = {
                    "date": other["date"],
                    "ensemble_by_concurrency": _levels(r),
                    "match": _match(r["fp16"]),
                }
    out = Path(files[0]).with_name("summary.json")
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k not in ("ultralytics", "network_by_batch")}, indent=1))


if __name__ == "__main__":
    main()
