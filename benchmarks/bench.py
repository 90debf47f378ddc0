"""`make bench`: this project's ensemble against the classical path and Ultralytics' predict loop,
on one machine, in one run, with the same weights and the same real JPEGs.

    python -m benchmarks.bench --images DIR --weights yolo11n.pt [--model yolov11_nano]
        [--concurrency 1,2,4,8,16] [--out build/bench/results]

Paths:
  ensemble (perf_analyzer)  JPEG bytes -> the Triton ensemble -> final detections; perf_analyzer 2.51, gRPC
  ensemble (client)         the same, driven by the Python load generator below
  classical (client)        what Ultralytics' Triton guide and levipereira's deployment do: the client
                            decodes and letterboxes (OpenCV), sends FP32 [1, 3, 640, 640] to the bare
                            network served by Triton with the same runtime, then runs Ultralytics' NMS
                            and scale_boxes itself
  ultralytics predict       YOLO(weights).predict(path) in a loop, no server
Stages alone (perf_analyzer): `preprocess` on the same JPEGs, `<model>_detector` on real letterboxed
inputs; the ensemble's overhead is its throughput over the slower stage's.
Writes OUT/results.csv, OUT/summary.md and OUT/throughput.png, OUT/latency.png.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.perf_input import perf_input
from yolo_triton.contract import VARIANTS, TensorSpec, Variant
from yolo_triton.model_config import detector_config
from yolo_triton.preprocessing import CpuPreprocessor
from yolo_triton.repository import MODEL_SOURCES, ROOT, write_repository
from yolo_triton.targets import (
    TARGETS,
)
from yolo_triton.tritonserver import TritonServer, free_ports, wheel_root

MEASURE_SECONDS = 4.0


# --- the classical path's server side: the bare network, same runtime as the detector ----------
def add_bare_network(
    repository: Path, v: Variant, weights: str, target: str = "onnxruntime-cpu", precision: str = "fp32"
) -> str:
    """`<model>_bare`: the network alone (FP32 images in, output0 out), run by the detector's runtime."""
    import onnx  # here, not above: the device imports this module without the export's packages

    from yolo_triton.export.create_onnx import export_network, network_in_fp16

    name = f"{v.name}_bare"
    version = repository / name / "1"
    version.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        network = export_network(weights, v, Path(tmp))  # input `images`, output `output0`
    onnx.save(network_in_fp16(network) if precision == "fp16" else network, version / "model.onnx")
    rows = network.graph.output[0].type.tensor_type.shape.dim
    inputs = (TensorSpec("images", "TYPE_FP32", (3, v.imgsz, v.imgsz)),)
    outputs = (TensorSpec("output0", "TYPE_FP32", tuple(d.dim_value for d in rows[1:])),)
    config = detector_config(v, target, name=name, inputs=inputs, outputs=outputs)
    (repository / name / "config.pbtxt").write_text(config)
    (version / "model.py").write_bytes((MODEL_SOURCES / TARGETS[target].source).read_bytes())
    return name


# --- load generation --------------------------------------------------------------------------
def percentiles(latencies_s: list[float]) -> dict:
    ms = np.array(latencies_s) * 1000
    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 1) for q in (50, 95, 99)}


def client_load(work, items: list, concurrency: int, seconds: float = MEASURE_SECONDS) -> dict:
    """`concurrency` threads call work(item) round-robin for `seconds` after one warm-up call each."""
    latencies, lock, stop = [], threading.Lock(), threading.Event()

    def worker(k: int):
        work(items[k % len(items)])
        i = k
        while not stop.is_set():
            t = time.perf_counter()
            work(items[i % len(items)])
            with lock:
                latencies.append(time.perf_counter() - t)
            i += concurrency

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # warm-up
    with lock:
        latencies.clear()
    start = time.perf_counter()
    time.sleep(seconds)
    with lock:
        done, elapsed = list(latencies), time.perf_counter() - start
    stop.set()
    for t in threads:
        t.join()
    return {"images_per_s": round(len(done) / elapsed, 2), **percentiles(done)}


def ensemble_client(url: str, model: str):
    import tritonclient.grpc as grpc

    from yolo_triton.client.async_detector import image_input

    local = threading.local()

    def work(data: bytes):
        if not hasattr(local, "client"):
            local.client = grpc.InferenceServerClient(url)
        result = local.client.infer(model, [image_input([data])])
        result.as_numpy("det_boxes")

    return work


def classical_client(url: str, bare: str, v: Variant):
    """Client decodes + letterboxes, server runs the bare network, client runs NMS and rescales."""
    import torch
    import tritonclient.grpc as grpc
    from ultralytics.utils.nms import non_max_suppression
    from ultralytics.utils.ops import scale_boxes

    cpu, local = CpuPreprocessor(v.imgsz), threading.local()

    def work(data: bytes):
        if not hasattr(local, "client"):
            local.client = grpc.InferenceServerClient(url)
        (image,) = cpu.decode([data])
        batch, _ = cpu.letterbox([image])
        tensor = grpc.InferInput("images", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch.astype(np.float32) / 255)
        output0 = local.client.infer(bare, [tensor]).as_numpy("output0")
        (det,) = non_max_suppression(torch.from_numpy(output0), v.conf, v.iou, max_det=v.max_detections)
        scale_boxes((v.imgsz, v.imgsz), det[:, :4], image.shape[:2])

    return work


def ultralytics_loop(weights: str, v: Variant, paths: list[Path], count: int) -> dict:
    from ultralytics import YOLO

    model = YOLO(weights)
    kwargs = v.predict_arguments
    model.predict(str(paths[0]), **kwargs)
    latencies = []
    for i in range(count):
        t = time.perf_counter()
        model.predict(str(paths[i % len(paths)]), **kwargs)
        latencies.append(time.perf_counter() - t)
    return {"images_per_s": round(len(latencies) / sum(latencies), 2), **percentiles(latencies)}


# --- perf_analyzer ------------------------------------------------------------------------------
def perf_analyzer_binary() -> tuple[str, dict]:
    """$PERF_ANALYZER if set (set on the GPU machine, tests/device/README.md), else the tritonclient
    wheel's perf_analyzer 2.51,
    which needs libb64.so.0d and libcudart.so.12: the nvidia-pytriton wheel carries both under
    hashed names."""
    if "PERF_ANALYZER" in os.environ:
        return os.environ["PERF_ANALYZER"], dict(os.environ)
    libs = ROOT / "build" / "perf_analyzer_libs"
    libs.mkdir(parents=True, exist_ok=True)
    bundled = wheel_root() / "nvidia_pytriton.libs"
    for pattern, name in (("libb64-*.so.0d", "libb64.so.0d"), ("libcudart-*.so.12*", "libcudart.so.12")):
        link = libs / name
        if not link.exists():
            link.symlink_to(next(bundled.glob(pattern)))
    return str(Path(sys.executable).parent / "perf_analyzer"), {
        **os.environ,
        "LD_LIBRARY_PATH": f"{libs}:{os.environ.get('LD_LIBRARY_PATH', '')}",
    }


UNSTABLE = "Failed to obtain stable measurement"


def perf_analyzer(
    url: str, model: str, input_json: Path, concurrency: int, shapes: list[str], work: Path, extra: tuple[str, ...] = ()
) -> tuple[dict, str]:
    """One concurrency level; extra: more perf_analyzer arguments (e.g. --shared-memory=cuda).
    A level perf_analyzer cannot stabilise (throughput within 50% over 3 windows, in 8 tries: on a
    busy machine it may not) is measured again with windows 3x as long, and if still unstable once
    more accepting any spread: its figures are kept with `unstable: True`, and the sweep goes on."""
    binary, env = perf_analyzer_binary()
    report = work / f"pa_{model}_{concurrency}.csv"
    tries = ((MEASURE_SECONDS, 50, False), (3 * MEASURE_SECONDS, 50, False), (3 * MEASURE_SECONDS, 1000, True))
    for seconds, stability, unstable in tries:  # noqa: B007 (the last try's, read after the loop)
        command = [
            binary,
            "-m",
            model,
            "-u",
            url,
            "-i",
            "grpc",
            f"--input-data={input_json}",
            *extra,
            *[f"--shape={s}" for s in shapes],
            f"--concurrency-range={concurrency}:{concurrency}",
            f"--measurement-interval={int(seconds * 1000)}",
            f"--stability-percentage={stability}",
            "--max-trials=8",
            "-f",
            str(report),
        ]
        out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if out.returncode == 0:
            break
        if UNSTABLE not in out.stdout + out.stderr:
            raise RuntimeError(f"perf_analyzer failed: {out.stdout[-1500:]}{out.stderr[-1500:]}")
    else:
        raise RuntimeError(f"perf_analyzer failed even accepting any spread: {out.stdout[-1500:]}{out.stderr[-1500:]}")
    row = next(csv.DictReader(io.StringIO(report.read_text())))
    shown = " ".join(
        Path(c).name if i == 0 else c for i, c in enumerate(command) if not c.startswith("-f") and c != str(report)
    )
    return {
        "images_per_s": round(float(row["Inferences/Second"]), 2),
        "p50_ms": round(int(row["p50 latency"]) / 1000, 1),
        "p95_ms": round(int(row["p95 latency"]) / 1000, 1),
        "p99_ms": round(int(row["p99 latency"]) / 1000, 1),
        "server_queue_ms": round(int(row["Server Queue"]) / 1000, 2),
        "server_compute_ms": round(
            (int(row["Server Compute Input"]) + int(row["Server Compute Infer"]) + int(row["Server Compute Output"]))
            / 1000,
            2,
        ),
        "unstable": unstable,
    }, shown


def triton_statistics(http_url: str) -> dict:
    """Triton's statistics of every model, by name (its HTTP API)."""
    import urllib.request

    with urllib.request.urlopen(f"http://{http_url}/v2/models/stats", timeout=30) as r:
        return {m["name"]: m for m in json.loads(r.read())["model_stats"]}


def statistics_between(before: dict, after: dict) -> dict:
    """Where the time went between two snapshots of Triton's statistics: per model, requests, the
    mean batch it executed, and the mean queue and compute times per request (ms)."""
    per_model = {}
    for name, m in after.items():
        b = before.get(name, {"inference_count": 0, "execution_count": 0, "inference_stats": {}})
        delta = lambda key, field: (
            int(m["inference_stats"][key][field]) - int(b["inference_stats"].get(key, {}).get(field, 0))
        )
        requests = delta("success", "count")
        if requests <= 0:
            continue
        executions = int(m["execution_count"]) - int(b["execution_count"])
        per_model[name] = {
            "requests": requests,
            "mean_batch": round((int(m["inference_count"]) - int(b["inference_count"])) / max(executions, 1), 2),
            **{
                f"{k}_ms": round(delta(k, "ns") / max(delta(k, "count"), 1) / 1e6, 3)
                for k in ("queue", "compute_input", "compute_infer", "compute_output")
            },
        }
    return per_model


def detector_input(paths: list[Path], v: Variant, out: Path) -> Path:
    """perf_analyzer data for the detector alone: real letterboxed images and their parameters."""
    cpu = CpuPreprocessor(v.imgsz)
    batch, params = cpu.letterbox(cpu.decode([p.read_bytes() for p in paths]))
    data = [
        {
            "images": {"b64": base64.b64encode(b.tobytes()).decode(), "shape": list(b.shape)},
            "letterbox": {"content": p.tolist(), "shape": [6]},
        }
        for b, p in zip(batch, params)
    ]
    out.write_text(json.dumps({"data": data}))
    return out


# --- the run ------------------------------------------------------------------------------------
def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    gpu = (
        subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
        ).stdout.strip()
        if subprocess.run(["which", "nvidia-smi"], capture_output=True).returncode == 0
        else "no GPU"
    )
    return f"{socket.gethostname()}: {os.cpu_count()} x {cpu}, {gpu}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--model", default="yolov11_nano", choices=sorted(VARIANTS))
    parser.add_argument("--concurrency", default="1,2,4,8,16")
    parser.add_argument("--predict-images", type=int, default=100, help="images of Ultralytics' predict loop")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "build" / "bench" / "results",
        help="where the results go (benchmarks/results/cpu, the committed ones, only when named)",
    )
    args = parser.parse_args()
    v, levels = VARIANTS[args.model], [int(c) for c in args.concurrency.split(",")]
    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    jpegs = [p.read_bytes() for p in paths]
    work = ROOT / "build" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    (work / "perf_input.json").write_text(json.dumps(perf_input(paths)))
    detector_json = detector_input(paths[:16], v, work / "detector_input.json")

    repository = write_repository(work / "model_repository", {v.name: args.weights})
    bare = add_bare_network(repository, v, args.weights)
    rows, commands = [], {}
    started = datetime.datetime.now(datetime.timezone.utc)
    with TritonServer(repository, work, *free_ports(3), log=work / "tritonserver.log") as server:
        url = server.grpc_url
        for c in levels:
            for path, (model, data, shapes) in {
                "ensemble (perf_analyzer)": (v.name, work / "perf_input.json", ["image:1"]),
                "stage: preprocess (perf_analyzer)": ("preprocess", work / "perf_input.json", ["image:1"]),
                "stage: detector (perf_analyzer)": (v.detector, detector_json, []),
            }.items():
                result, commands[path] = perf_analyzer(url, model, data, c, shapes, work)
                rows.append({"path": path, "concurrency": c, **result})
            rows.append(
                {"path": "ensemble (client)", "concurrency": c, **client_load(ensemble_client(url, v.name), jpegs, c)}
            )
            rows.append(
                {
                    "path": "classical (client)",
                    "concurrency": c,
                    **client_load(classical_client(url, bare, v), jpegs, c),
                }
            )
            print(*(r for r in rows if r["concurrency"] == c), sep="\n", flush=True)
    rows.append(
        {
            "path": "ultralytics predict",
            "concurrency": 1,
            **ultralytics_loop(args.weights, v, paths, args.predict_images),
        }
    )
    write_report(args.out, rows, commands, args, started)


def versions() -> str:
    from importlib.metadata import version

    return ", ".join(
        f"{p} {version(p)}"
        for p in ("nvidia-pytriton", "tritonclient", "onnxruntime", "opencv-python", "ultralytics", "torch")
    )


def write_report(out: Path, rows: list[dict], commands: dict, args, started) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fields = [
        "path",
        "concurrency",
        "images_per_s",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "server_queue_ms",
        "server_compute_ms",
        "unstable",
    ]
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
    by = lambda path: {r["concurrency"]: r for r in rows if r["path"] == path}
    ensemble, client, classical = by("ensemble (perf_analyzer)"), by("ensemble (client)"), by("classical (client)")
    pre, det = by("stage: preprocess (perf_analyzer)"), by("stage: detector (perf_analyzer)")
    predict = by("ultralytics predict")[1]
    lines = [
        f"# Benchmark: {args.model}",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}",
        f"- versions: {versions()}",
        f"- command: `python -m benchmarks.bench --images {args.images} --weights {args.weights} "
        f"--model {args.model} --concurrency {args.concurrency}`",
        f"- images: {len(list(args.images.glob('*.jpg')))} JPEGs from {args.images}; "
        f"measurement window {MEASURE_SECONDS:.0f} s per point",
        "",
        "| path | concurrency | images/s | p50 ms | p95 ms | p99 ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        rate = f"{r['images_per_s']} (unstable)" if r.get("unstable") else r["images_per_s"]
        lines.append(f"| {r['path']} | {r['concurrency']} | {rate} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} |")
    unstable = [f"{r['path']} at {r['concurrency']}" for r in rows if r.get("unstable")]
    lines += [
        "",
        "Unstable points (perf_analyzer's throughput varied over 50% between windows even 3x as long; "
        f"figures kept as measured): {', '.join(unstable) if unstable else 'none'}.",
    ]
    lines += [
        "",
        "| concurrency | ensemble / classical (same client) | ensemble (perf_analyzer) / Ultralytics predict loop | "
        "ensemble / slower stage alone |",
        "| --- | --- | --- | --- |",
    ]
    for c in sorted(ensemble):
        slower = min(pre[c]["images_per_s"], det[c]["images_per_s"])
        lines.append(
            f"| {c} | {client[c]['images_per_s'] / classical[c]['images_per_s']:.2f}x | "
            f"{ensemble[c]['images_per_s'] / predict['images_per_s']:.2f}x | "
            f"{ensemble[c]['images_per_s'] / slower:.0%} |"
        )
    lines += ["", "perf_analyzer commands (one per concurrency):", ""] + [f"- {k}: `{c}`" for k, c in commands.items()]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    plot(out, rows)
    print((out / "summary.md").read_text())


def plot(out: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for metric, label, name in (
        ("images_per_s", "images/s", "throughput.png"),
        ("p95_ms", "p95 latency (ms)", "latency.png"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for path in dict.fromkeys(r["path"] for r in rows):
            points = [(r["concurrency"], r[metric]) for r in rows if r["path"] == path]
            if len(points) == 1:
                ax.axhline(points[0][1], linestyle="--", color="grey", label=f"{path} (one stream)")
            else:
                ax.plot(*zip(*points), marker="o", label=path)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")  # the stages alone run at very different rates
        ax.set_xlabel("concurrency (requests in flight, one image each)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    main()
