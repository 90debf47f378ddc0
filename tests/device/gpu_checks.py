"""On the lent GPU (tests/device/README.md): the GPU preprocessing and the GPU ensemble, measured.

    python3 tests/device/gpu_checks.py OUT_DIR [STEP,...]   (the stub env's python3: NumPy 1, CuPy,
                                                             nvImageCodec, OpenCV; steps below, default all)

1. Letterbox parity: from identical decoded pixels, the CuPy kernel vs the CPU letterbox (which the
   CPU tests prove pixel-identical to Ultralytics' LetterBox), on the 130 photos and on resized
   copies of varied sizes and aspect ratios: max |difference| on the 0-255 scale.
2. Throughput of decode + letterbox, images/s at batch 1, 8, 32, 64, for 640x480 and 1920x1080
   JPEGs: nvImageCodec's hardware decoder, its CUDA and hybrid decoders, and OpenCV on all CPU cores.
3. The GPU ensemble in the Triton server of the recipe: JPEG bytes in, detections out, matched
   against Ultralytics' predictions made beforehand (build/device/reference.json); the detector is
   the torch stand-in, which refuses any `images` tensor that is not in GPU memory.
4. bench: perf_analyzer (gRPC, concurrency 1 to 128) on the GPU ensemble and on each stage alone.
5. classical: the ensemble against the classical path (client-side decode, letterbox and NMS; the
   bare network served with the same torch runtime), the same load generator driving both.
6. soak: benchmarks/soak.py against the GPU ensemble, GPU memory sampled too (needs gRPC and psutil
   in the stub env: tests/device/README.md).
Writes OUT_DIR/gpu_checks.json and prints a summary.
"""

import contextlib
import json
import os
import platform
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cupy as cp
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _package_folder(name: str, folder: Path) -> None:
    """What the editable install maps (pyproject: yolo_triton.benchmarks = benchmarks/), by hand:
    the project is not installed on the device, only its checkout is on the path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py", submodule_search_locations=[str(folder)])
    sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules[name])


_package_folder("yolo_triton.benchmarks", ROOT / "benchmarks")
_package_folder("yolo_triton.client", ROOT / "client")

from matching import Detections, MatchCounts  # noqa: E402
from yolo_triton.contract import VARIANTS  # noqa: E402
from yolo_triton.gpu_preprocessing import GpuPreprocessor  # noqa: E402
from yolo_triton.preprocessing import CpuPreprocessor, decode, letterbox_into  # noqa: E402
from yolo_triton.server import PYTHON_BACKEND_CONFIG  # noqa: E402

DATA = ROOT / "build" / "device"
IMGSZ = 640
ODD_SHAPES = [(1080, 1920), (1920, 1080), (333, 777), (777, 333), (16, 1000), (1000, 16), (2000, 3000), (641, 639),
              (639, 641), (1280, 1280), (320, 320), (1, 1), (3, 4000), (4000, 3), (720, 1280), (481, 640)]


def letterbox_parity(photos: list[Path]) -> dict:
    gpu = GpuPreprocessor(IMGSZ)
    stream = cp.cuda.Stream(non_blocking=True)
    cases, decode_diffs = [], []
    with stream:
        decoded = gpu.decode([p.read_bytes() for p in photos], stream)
        stream.synchronize()
        hosts = [cp.asnumpy(im) for im in decoded]  # RGB, exactly the pixels the kernel reads
        for path, host in zip(photos, hosts):
            opencv_rgb = decode(path.read_bytes())[..., ::-1]
            decode_diffs.append(float(np.abs(host.astype(int) - opencv_rgb).max()) if host.shape == opencv_rgb.shape else None)
        resized = [np.ascontiguousarray(cv2.resize(hosts[i % len(hosts)], (w, h), interpolation=cv2.INTER_AREA))
                   for i, (h, w) in enumerate(ODD_SHAPES)]
        inputs = [*decoded, *[cp.asarray(r) for r in resized]]
        batch, _ = gpu.letterbox(inputs, stream)
        stream.synchronize()
        ours = cp.asnumpy(batch)
    for i, host in enumerate([*hosts, *resized]):
        expected = np.empty((3, IMGSZ, IMGSZ), np.uint8)
        letterbox_into(expected, np.ascontiguousarray(host[..., ::-1]))  # the CPU letterbox takes BGR
        diff = np.abs(ours[i].astype(int) - expected)
        cases.append({"shape": list(host.shape[:2]), "max": int(diff.max()), "mean": float(diff.mean()),
                      "over_1": int((diff > 1).sum())})
    valid = [d for d in decode_diffs if d is not None]
    return {"cases": len(cases), "distinct_shapes": len({tuple(c["shape"]) for c in cases}),
            "max_abs_diff": max(c["max"] for c in cases), "mean_abs_diff": float(np.mean([c["mean"] for c in cases])),
            "pixels_over_1": sum(c["over_1"] for c in cases), "worst": sorted(cases, key=lambda c: -c["max"])[:5],
            "decode_vs_opencv": {"images": len(valid), "max_abs_diff": max(valid), "mean_of_max": float(np.mean(valid))}}


def _jpegs(photos: list[Path], size: tuple[int, int], count: int) -> list[bytes]:
    out = []
    for i in range(count):
        image = cv2.resize(cv2.imread(str(photos[i % len(photos)])), size, interpolation=cv2.INTER_AREA)
        out.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return out


def _rate(run, images: int, seconds: float = 1.5) -> float:
    run()  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        done += images
    return done / (time.perf_counter() - start)


def throughput(photos: list[Path]) -> dict:
    results = {}
    stream = cp.cuda.Stream(non_blocking=True)
    cpu = CpuPreprocessor(IMGSZ)
    pool = ThreadPoolExecutor(os.cpu_count())
    cv2.setNumThreads(1)  # one image per core
    for label, size in (("640x480", (640, 480)), ("1920x1080", (1920, 1080))):
        jpegs = _jpegs(photos, size, 64)
        for mode, backends in (("nvImageCodec hardware", ("HW_GPU_ONLY",)), ("nvImageCodec CUDA", ("GPU_ONLY",)),
                               ("nvImageCodec hybrid", ("HYBRID_CPU_GPU",)), ("OpenCV CPU", None)):
            row = {}
            try:
                gpu = GpuPreprocessor(IMGSZ, backends=backends) if backends else None
                for batch in (1, 8, 32, 64):
                    data = jpegs[:batch]
                    if gpu:
                        def run():
                            with stream:
                                images = gpu.decode(data, stream)
                                assert not any(isinstance(im, (cp.ndarray, Exception)) for im in images), "fell back to OpenCV"
                                gpu.letterbox(images, stream)
                                stream.synchronize()
                    else:
                        def run():
                            chunks = [data[i::os.cpu_count()] for i in range(os.cpu_count())]
                            list(pool.map(lambda c: cpu.letterbox(cpu.decode(c)) if c else None, chunks))
                    row[str(batch)] = round(_rate(run, batch), 1)
            except Exception as e:  # e.g. a backend this GPU does not have
                row["error"] = f"{type(e).__name__}: {e}"[:300]
            results[f"{mode} {label}"] = row
    return results


def _infer_binary(url: str, model: str, inputs: list[tuple[str, str, list[int], bytes]], outputs: list[str]) -> dict:
    """One request over Triton's HTTP API with the binary tensor extension (no tritonclient here):
    inputs as (name, datatype, shape, raw bytes)."""
    header = json.dumps({"inputs": [{"name": n, "shape": shape, "datatype": t, "parameters": {"binary_data_size": len(raw)}}
                                    for n, t, shape, raw in inputs],
                         "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in outputs]}).encode()
    request = urllib.request.Request(f"http://{url}/v2/models/{model}/infer", data=header + b"".join(i[3] for i in inputs),
                                     method="POST", headers={"Content-Type": "application/octet-stream",
                                                             "Inference-Header-Content-Length": str(len(header))})
    with urllib.request.urlopen(request, timeout=120) as r:
        body = r.read()
        size = int(r.headers["Inference-Header-Content-Length"])
    meta, offset, result = json.loads(body[:size]), size, {}
    for out in meta["outputs"]:
        n = out["parameters"]["binary_data_size"]
        dtype = {"INT32": np.int32, "FP32": np.float32}[out["datatype"]]
        result[out["name"]] = np.frombuffer(body[offset:offset + n], dtype).reshape(out["shape"])
        offset += n
    return result


def _infer(url: str, model: str, images: list[bytes]) -> dict:
    """The ensemble: encoded images in (BYTES: 4-byte length + bytes each), detections out."""
    payload = b"".join(struct.pack("<I", len(d)) + d for d in images)
    return _infer_binary(url, model, [("image", "BYTES", [len(images), 1], payload)], [s.name for s in VARIANTS[model].outputs])


@contextlib.contextmanager
def served(out_dir: Path):
    """The Triton server of the recipe on the device repository; yields its HTTP address."""
    log = open(out_dir / "tritonserver.log", "a")
    env = dict(os.environ, PATH=f"/opt/stubenv/bin:{os.environ['PATH']}")
    server = subprocess.Popen([os.environ["TRITONSERVER"], f"--model-repository={DATA / 'model_repository'}",
                               f"--backend-directory={os.environ['TRITON_BACKENDS']}", "--cuda-memory-pool-byte-size=0:536870912",
                               *(f"--backend-config={c}" for c in PYTHON_BACKEND_CONFIG),
                               "--http-port=18000", "--grpc-port=18001", "--metrics-port=18002", "--model-control-mode=none"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    url = "127.0.0.1:18000"
    try:
        deadline = time.time() + 240
        while True:
            try:
                urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"tritonserver not ready (exit {server.poll()})")
                time.sleep(1)
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        log.close()
        lines = (out_dir / "tritonserver.log").read_text().splitlines()
        print("\n".join(line for line in lines if "preprocess:" in line or "torch_detector" in line or "rror" in line)[-3000:])


def ensemble(photos: list[Path], out_dir: Path) -> dict:
    reference = json.loads((DATA / "reference.json").read_text())
    model = reference["model"]
    with served(out_dir) as url:
        counts = MatchCounts()
        start = time.perf_counter()
        for i in range(0, len(photos), 8):
            chunk = photos[i:i + 8]
            result = _infer(url, model, [p.read_bytes() for p in chunk])
            for row, path in enumerate(chunk):
                ref = reference["detections"][path.name]
                expected = Detections(np.array(ref["boxes"], np.float32).reshape(-1, 4), np.array(ref["scores"]), np.array(ref["classes"]))
                counts.add(path.name, expected, Detections.from_outputs(*(result[s.name][row] for s in VARIANTS[model].outputs)))
        seconds = time.perf_counter() - start
        bad = {}
        for kind, data in (("empty", b""), ("random", os.urandom(5000)), ("truncated", photos[0].read_bytes()[:300])):
            try:
                _infer(url, model, [data])
                bad[kind] = "answered?"
            except urllib.error.HTTPError as e:
                bad[kind] = f"{e.code}: {json.loads(e.read()).get('error', '')[:160]}"
        return {"model": model, "images": len(photos), "match": str(counts), "matched_fraction": counts.matched_fraction,
                "extra_fraction": counts.extra_fraction, "misses": counts.misses[:10], "seconds": round(seconds, 2),
                "bad_inputs": bad, "still_ready": urllib.request.urlopen(f"http://{url}/v2/health/ready").status == 200}


def bench(out_dir: Path, levels=(1, 2, 4, 8, 16, 32, 64, 128)) -> dict:
    """perf_analyzer (gRPC) on the GPU ensemble and on each of its stages alone."""
    from yolo_triton.benchmarks.bench import perf_analyzer

    model = json.loads((DATA / "reference.json").read_text())["model"]
    rows, commands = [], {}
    with served(out_dir) as url:
        grpc_url = url.replace("18000", "18001")
        for c in levels:
            for path, (name, data, shapes) in {"ensemble": (model, DATA / "perf_input.json", ["image:1"]),
                                               "stage: preprocess (GPU)": ("preprocess", DATA / "perf_input.json", ["image:1"]),
                                               "stage: detector (torch stand-in)": (VARIANTS[model].detector, DATA / "detector_input.json", [])}.items():
                try:
                    result, commands[path] = perf_analyzer(grpc_url, name, data, c, shapes, out_dir)
                except Exception as e:
                    result = {"error": str(e)[-500:]}
                rows.append({"path": path, "concurrency": c, **result})
                print(rows[-1], flush=True)
    return {"rows": rows, "commands": commands}


def classical(photos: list[Path], out_dir: Path, levels=(1, 4, 16, 64)) -> dict:
    """The ensemble against the classical path on this GPU with the same detector runtime (the
    TorchScript network in PyTorch on the GPU), both driven by the same Python load generator over
    HTTP with the same JPEGs. Classical: this machine's CPU decodes and letterboxes (OpenCV), sends
    FP32 [1, 3, 640, 640], gets output0 [1, 84, 8400] back and runs the NMS (torchvision, best class,
    per-class NMS, top K) and the box mapping itself, as Ultralytics' Triton guide does."""
    sys.path.append("/opt/torchshim")
    import torch
    import torchvision

    from yolo_triton.benchmarks.bench import client_load

    torch.set_num_threads(1)  # one per client thread, as each request is one image
    model = json.loads((DATA / "reference.json").read_text())["model"]
    v, cpu = VARIANTS[model], CpuPreprocessor(IMGSZ)
    jpegs = [p.read_bytes() for p in photos]

    def classical_work(url):
        def work(data: bytes):
            (image,) = cpu.decode([data])
            batch, params = cpu.letterbox([image])
            tensor = (batch.astype(np.float32) / 255).tobytes()
            output0 = _infer_binary(url, f"{model}_bare", [("images", "FP32", [1, 3, IMGSZ, IMGSZ], tensor)], ["output0"])["output0"]
            rows = torch.from_numpy(output0[0].copy()).T  # [N, 4 + C]
            xy, wh = rows[:, :2], rows[:, 2:4]
            boxes = torch.cat((xy - wh / 2, xy + wh / 2), 1)
            best, cls = rows[:, 4:].max(1)
            idx = torch.nonzero(best > v.conf).squeeze(1)
            keep = idx[torchvision.ops.batched_nms(boxes[idx], best[idx], cls[idx], v.iou)[: v.max_detections]]
            pad_x, pad_y, scale_x, scale_y, width, height = params[0]
            mapped = (boxes[keep] - torch.tensor([pad_x, pad_y, pad_x, pad_y])) / torch.tensor([scale_x, scale_y, scale_x, scale_y])
            return torch.minimum(mapped.clamp(min=0), torch.tensor([width, height, width, height]))
        return work

    rows = []
    with served(out_dir) as url:
        check = classical_work(url)(jpegs[0])  # the classical path finds what the ensemble finds
        ours = _infer(url, model, [jpegs[0]])
        agree = int(ours["num_dets"][0, 0]) == len(check)
        for c in levels:
            for path, work in (("ensemble (client)", lambda d: _infer(url, model, [d])), ("classical (client)", classical_work(url))):
                rows.append({"path": path, "concurrency": c, **client_load(work, jpegs, c)})
                print(rows[-1], flush=True)
        stats = model_stats(url)
    return {"rows": rows, "same_detection_count_on_first_photo": agree, "triton_statistics": stats}


def model_stats(url: str) -> dict:
    """Where the time goes, from Triton's statistics API: per model, the mean queue and compute
    time per request (ms) and the mean batch size it executed, over the whole run."""
    with urllib.request.urlopen(f"http://{url}/v2/models/stats", timeout=30) as r:
        found = json.loads(r.read())["model_stats"]
    per_model = {}
    for m in found:
        stats, n = m["inference_stats"], max(int(m["inference_count"]), 1)
        per_model[m["name"]] = {
            "requests": int(stats["success"]["count"]), "mean_batch": round(n / max(int(m["execution_count"]), 1), 2),
            **{f"{k}_ms_per_request": round(int(stats[k]["ns"]) / max(int(stats[k]["count"]), 1) / 1e6, 3)
               for k in ("queue", "compute_input", "compute_infer", "compute_output")}}
    return per_model


def soak_gpu(photos: list[Path], out_dir: Path) -> dict:
    """benchmarks/soak.py on the GPU ensemble: mixed good and bad requests, every answer checked,
    the server's and stubs' RSS and the GPU's memory sampled (SOAK_REQUESTS, default 30000)."""
    from yolo_triton.benchmarks.soak import soak

    model = json.loads((DATA / "reference.json").read_text())["model"]
    requests = int(os.environ.get("SOAK_REQUESTS", "30000"))
    with served(out_dir) as url:
        pid = int(subprocess.run(["pgrep", "-x", "tritonserver"], capture_output=True, text=True, check=True).stdout.split()[0])
        report = soak(url.replace("18000", "18001"), model, [p.read_bytes() for p in photos], requests, 32, pid)
    print(report.summary(), flush=True)
    return {"summary": report.summary(), "requests": requests, "concurrency": 32, "wrong": report.wrong[:50],
            "differing": report.differing, "served": report.served, "refused": report.refused,
            "growth_percent": report.growth_percent, "samples": report.samples}


def main():
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = sorted((DATA / "images").glob("*.jpg"))
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    from nvidia import nvimgcodec

    report = {"date": time.strftime("%Y-%m-%d"), "gpu": gpu, "cpu_cores": os.cpu_count(), "python": platform.python_version(),
              "cupy": cp.__version__, "nvimgcodec": nvimgcodec.__version__, "opencv": cv2.__version__, "numpy": np.__version__}
    steps = {"letterbox_parity": lambda: letterbox_parity(photos), "throughput": lambda: throughput(photos),
             "ensemble": lambda: ensemble(photos, out_dir), "bench": lambda: bench(out_dir),
             "classical": lambda: classical(photos, out_dir), "soak": lambda: soak_gpu(photos, out_dir)}
    chosen = sys.argv[2].split(",") if len(sys.argv) > 2 else list(steps)
    for name, step in ((n, steps[n]) for n in chosen):
        t = time.time()
        try:
            report[name] = step()
        except Exception:
            import traceback

            report[name] = {"error": traceback.format_exc()[-2000:]}
        print(f"--- {name} ({time.time() - t:.0f} s)\n{json.dumps(report[name], indent=1)[:4000]}", flush=True)
        (out_dir / "gpu_checks.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
