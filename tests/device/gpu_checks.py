"""On the H100 (tests/device/README.md): the GPU path, checked and measured.

    python3 tests/device/gpu_checks.py OUT_DIR [STEP,...]   (the stub env's python3: NumPy 1, CuPy,
                                                             nvImageCodec, ONNX Runtime GPU, OpenCV)

Steps (default: ensemble,bench):
- letterbox_parity, throughput: the CuPy letterbox against the CPU one, decode + letterbox alone.
- ensemble: the served GPU ensemble (preprocess on the GPU -> ONNX Runtime GPU detector, the
  repositories prepare.py wrote with the project's writer), JPEG bytes in, detections matched
  against Ultralytics' predictions made beforehand, FP16 and FP32; bad inputs refused.
- bench: perf_analyzer (gRPC, the photos' JPEG bytes) on the FP16 ensemble, concurrency 1 to 256;
  each stage alone (the detector fed from CUDA shared memory, so its input is in GPU memory as in
  the ensemble); Triton's per-model statistics.
- tuning: the ensemble at high concurrency with other instance counts and queue delays (the
  two-model runtimes: preprocess and detector).
- runtimes: each of RUNTIMES ("name", or "name:N" with N detector instances) in one run: FP16
  accuracy and perf_analyzer at ENSEMBLE_LEVELS; network: yolo11n's network alone (CUDA graphs);
  latency: one photo per execution inside one process, each stage's p50 / p99 (LATENCY_RUNS);
  decoders: the ensemble without the hardware JPEG decoder.
- kernel: the detector graph in ONNX Runtime alone, in this process, input in GPU memory.
- classical: client decodes and letterboxes (OpenCV), FP32 tensor over gRPC to the same FP16
  network on ONNX Runtime GPU, NMS on the client; the ensemble through the same load generator.
- ultralytics: Ultralytics' own predict loop (FP16, files from disk) in the image's PyTorch env.
- soak: benchmarks/soak.py against the FP16 ensemble, GPU memory sampled too.
- rect: benchmarks/rect.py's comparison (rect against square, the 4:3 photos and a mix of shapes)
  on the FP16 GPU repository `model_repository_rect`, after one unmeasured pass (the sessions of
  each batch size and shape are made at first use). RECT_LEVELS (default 1,16,64).
- fuzz: hostile inputs (tests/fuzz_inputs.py, the CPU fuzz's generator) through the GPU
  preprocessing in a worker process (gpu_fuzz.py), then one per request through the served FP16
  ensemble among good photos: every input answered or refused with a message, every photo with
  its own detections, the stubs still the same processes. FUZZ_INPUTS (20000) each way, FUZZ_SEED (0).
- multi_gpu (a machine of several GPUs): the FP16 repository served twice in the run, with
  CUDA_VISIBLE_DEVICES=0 and on every GPU (Triton's memory pool on each: gpu_server_args). Both get
  the same requests, of the model's largest batch (each one execution on its own, so that an
  answer depends on its pixels alone: multi_gpu.py), all 130 photos in several of them, a few in
  flight per GPU, ANSWER_ROUNDS (2) times: every answer on N GPUs compared with the one-GPU answer
  to the same request (matching.unpaired), and the one-GPU answers with each other. Then
  perf_analyzer at MULTI_GPU_LEVELS (256,512) both ways, every GPU's utilisation sampled by
  nvidia-smi meanwhile, Triton's statistics per model, each model's instances per GPU (Triton's log).
  Writes OUT_DIR/multi_gpu.json: date, gpu, gpus, single_img_s, multi_img_s, scaling,
  answers_equal, command, and the raw rows.
Writes OUT_DIR/gpu_checks.json and prints a summary.
"""

import base64
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cupy as cp
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


from matching import Detections, MatchCounts  # noqa: E402

from benchmarks.bench import statistics_between, triton_statistics  # noqa: E402
from yolo_triton.contract import VARIANTS, detection_outputs  # noqa: E402
from yolo_triton.gpu_preprocessing import GpuPreprocessor  # noqa: E402
from yolo_triton.preprocessing import CpuPreprocessor, decode, letterbox_into  # noqa: E402
from yolo_triton.tritonserver import PYTHON_BACKEND_CONFIG, gpu_server_args, visible_gpu_count  # noqa: E402

DATA = ROOT / "build" / "device"
IMGSZ = 640
ODD_SHAPES = [
    (1080, 1920),
    (1920, 1080),
    (333, 777),
    (777, 333),
    (16, 1000),
    (1000, 16),
    (2000, 3000),
    (641, 639),
    (639, 641),
    (1280, 1280),
    (320, 320),
    (1, 1),
    (3, 4000),
    (4000, 3),
    (720, 1280),
    (481, 640),
]


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
            decode_diffs.append(
                float(np.abs(host.astype(int) - opencv_rgb).max()) if host.shape == opencv_rgb.shape else None
            )
        resized = [
            np.ascontiguousarray(cv2.resize(hosts[i % len(hosts)], (w, h), interpolation=cv2.INTER_AREA))
            for i, (h, w) in enumerate(ODD_SHAPES)
        ]
        inputs = [*decoded, *[cp.asarray(r) for r in resized]]
        batch, _ = gpu.letterbox(inputs, stream)
        stream.synchronize()
        ours = cp.asnumpy(batch)
    for i, host in enumerate([*hosts, *resized]):
        expected = np.empty((3, IMGSZ, IMGSZ), np.uint8)
        letterbox_into(expected, np.ascontiguousarray(host[..., ::-1]))  # the CPU letterbox takes BGR
        diff = np.abs(ours[i].astype(int) - expected)
        cases.append(
            {
                "shape": list(host.shape[:2]),
                "max": int(diff.max()),
                "mean": float(diff.mean()),
                "over_1": int((diff > 1).sum()),
            }
        )
    valid = [d for d in decode_diffs if d is not None]
    return {
        "cases": len(cases),
        "distinct_shapes": len({tuple(c["shape"]) for c in cases}),
        "max_abs_diff": max(c["max"] for c in cases),
        "mean_abs_diff": float(np.mean([c["mean"] for c in cases])),
        "pixels_over_1": sum(c["over_1"] for c in cases),
        "worst": sorted(cases, key=lambda c: -c["max"])[:5],
        "decode_vs_opencv": {"images": len(valid), "max_abs_diff": max(valid), "mean_of_max": float(np.mean(valid))},
    }


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
        for mode, backends in (
            ("nvImageCodec hardware", ("HW_GPU_ONLY",)),
            ("nvImageCodec CUDA", ("GPU_ONLY",)),
            ("nvImageCodec hybrid", ("HYBRID_CPU_GPU",)),
            ("OpenCV CPU", None),
        ):
            row = {}
            try:
                gpu = GpuPreprocessor(IMGSZ, backends=backends) if backends else None
                for batch in (1, 8, 32, 64):
                    data = jpegs[:batch]
                    if gpu:

                        def run():
                            with stream:
                                images = gpu.decode(data, stream)
                                assert not any(isinstance(im, (cp.ndarray, Exception)) for im in images), (
                                    "fell back to OpenCV"
                                )
                                gpu.letterbox(images, stream)
                                stream.synchronize()
                    else:

                        def run():
                            chunks = [data[i :: os.cpu_count()] for i in range(os.cpu_count())]
                            list(pool.map(lambda c: cpu.letterbox(cpu.decode(c)) if c else None, chunks))

                    row[str(batch)] = round(_rate(run, batch), 1)
            except Exception as e:  # e.g. a backend this GPU does not have
                row["error"] = f"{type(e).__name__}: {e}"[:300]
            results[f"{mode} {label}"] = row
    return results


def _infer_binary(url: str, model: str, inputs: list[tuple[str, str, list[int], bytes]], outputs: list[str]) -> dict:
    """One request over Triton's HTTP API with the binary tensor extension (no tritonclient here):
    inputs as (name, datatype, shape, raw bytes)."""
    header = json.dumps(
        {
            "inputs": [
                {"name": n, "shape": shape, "datatype": t, "parameters": {"binary_data_size": len(raw)}}
                for n, t, shape, raw in inputs
            ],
            "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in outputs],
        }
    ).encode()
    request = urllib.request.Request(
        f"http://{url}/v2/models/{model}/infer",
        data=header + b"".join(i[3] for i in inputs),
        method="POST",
        headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
    )
    with urllib.request.urlopen(request, timeout=120) as r:
        body = r.read()
        size = int(r.headers["Inference-Header-Content-Length"])
    meta, offset, result = json.loads(body[:size]), size, {}
    for out in meta["outputs"]:
        n = out["parameters"]["binary_data_size"]
        dtype = {"INT32": np.int32, "FP32": np.float32}[out["datatype"]]
        result[out["name"]] = np.frombuffer(body[offset : offset + n], dtype).reshape(out["shape"])
        offset += n
    return result


def _infer(url: str, model: str, images: list[bytes]) -> dict:
    """The ensemble: encoded images in (BYTES: 4-byte length + bytes each), detections out."""
    payload = b"".join(struct.pack("<I", len(d)) + d for d in images)
    return _infer_binary(
        url, model, [("image", "BYTES", [len(images), 1], payload)], [s.name for s in detection_outputs(0)]
    )


GPU_TARGETS = ("pytorch-gpu", "onnxruntime-gpu")
RUNTIME = os.environ.get("RUNTIME", GPU_TARGETS[0])  # the detector runtime of every step but `runtimes`


def _repository(runtime: str, precision: str) -> Path:
    return DATA / f"model_repository_{runtime}_{precision}"


REPOSITORY = {
    "fp16": _repository(RUNTIME, "fp16"),
    "fp32": _repository(RUNTIME, "fp32"),
    "rect": DATA / "model_repository_rect",
}


@contextlib.contextmanager
def served(out_dir: Path, repository: Path | None = None, ready_s: float = 240):
    """tritonserver (Triton 2.51) on a GPU repository, on the GPUs CUDA_VISIBLE_DEVICES leaves it (all
    by default), with the pool flags of gpu_server_args for them; yields its HTTP address."""
    repository = repository or REPOSITORY["fp16"]
    log = open(out_dir / "tritonserver.log", "a")
    env = dict(os.environ, PATH=f"/opt/stubenv/bin:{os.environ['PATH']}")
    started = time.time()
    server = subprocess.Popen(
        [
            os.environ["TRITONSERVER"],
            f"--model-repository={repository}",
            f"--backend-directory={os.environ['TRITON_BACKENDS']}",
            *gpu_server_args(),
            *(f"--backend-config={c}" for c in PYTHON_BACKEND_CONFIG),
            "--http-port=18000",
            "--grpc-port=18001",
            "--metrics-port=18002",
            "--model-control-mode=none",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = "127.0.0.1:18000"
    try:
        deadline = time.time() + ready_s
        while True:
            try:
                urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"tritonserver not ready (exit {server.poll()})") from None
                time.sleep(1)
        print(f"server ready in {time.time() - started:.0f} s ({repository.name})", flush=True)
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        try:  # preprocess's GPU instances may not unload within Triton's 30 s exit timeout
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()
        lines = (out_dir / "tritonserver.log").read_text(errors="replace").splitlines()  # fuzz bytes in messages
        print(
            "\n".join(
                line for line in lines if any(w in line for w in ("preprocess:", "ONNX Runtime", "PyTorch", "rror"))
            )[-3000:]
        )


def ensemble(photos: list[Path], out_dir: Path) -> dict:
    precisions = os.environ.get("PRECISIONS", "fp16,fp32").split(",")
    report = {}
    for precision in precisions:
        with served(out_dir, REPOSITORY[precision]) as url:
            report[precision] = ensemble_accuracy(photos, url)
    return report


def _reference() -> dict:
    """Ultralytics' predictions: its default predict on this GPU in FP32 (the ultralytics step), else
    the CPU's of prepare.py."""
    gpu = SCRATCH / "reference_gpu_fp32.json"
    reference = json.loads((DATA / "reference.json").read_text())
    if gpu.exists():
        reference = {**reference, "detections": json.loads(gpu.read_text()), "device": "gpu fp32"}
    return reference


def ensemble_accuracy(photos: list[Path], url: str) -> dict:
    """The served ensemble's detections on the photos against Ultralytics', in batches of 8 and alone;
    bad inputs refused, the server still ready."""
    reference = _reference()
    model = reference["model"]
    counts = MatchCounts()
    start = time.perf_counter()
    for i in range(0, len(photos), 8):
        chunk = photos[i : i + 8]
        result = _infer(url, model, [p.read_bytes() for p in chunk])
        for row, path in enumerate(chunk):
            ref = reference["detections"][path.name]
            expected = Detections(
                np.array(ref["boxes"], np.float32).reshape(-1, 4), np.array(ref["scores"]), np.array(ref["classes"])
            )
            counts.add(
                path.name,
                expected,
                Detections.from_outputs(*(result[s.name][row] for s in VARIANTS[model].outputs)),
            )
    seconds = time.perf_counter() - start
    alone = MatchCounts()  # each photo alone (batch 1): the same detections as in batches of 8?
    for path in photos[:16]:
        ref = reference["detections"][path.name]
        expected = Detections(
            np.array(ref["boxes"], np.float32).reshape(-1, 4), np.array(ref["scores"]), np.array(ref["classes"])
        )
        result = _infer(url, model, [path.read_bytes()])
        alone.add(path.name, expected, Detections.from_outputs(*(result[s.name][0] for s in VARIANTS[model].outputs)))
    bad = {}
    for kind, data in (("empty", b""), ("random", os.urandom(5000)), ("truncated", photos[0].read_bytes()[:300])):
        try:
            _infer(url, model, [data])
            bad[kind] = "answered?"
        except urllib.error.HTTPError as e:
            bad[kind] = f"{e.code}: {json.loads(e.read()).get('error', '')[:160]}"
    return {
        "model": model,
        "reference_from": reference.get("device", "cpu fp32"),
        "images": len(photos),
        "match": str(counts),
        "reference": counts.reference,
        "matched": counts.matched,
        "extra": counts.ours - counts.matched,
        "matched_fraction": counts.matched_fraction,
        "extra_fraction": counts.extra_fraction,
        "misses": counts.misses[:10],
        "seconds": round(seconds, 2),
        "first_16_alone": str(alone),
        "bad_inputs": bad,
        "still_ready": urllib.request.urlopen(f"http://{url}/v2/health/ready").status == 200,
    }


SCRATCH = Path("/tmp/yolo_triton_device")
ENSEMBLE_LEVELS = tuple(int(c) for c in os.environ.get("ENSEMBLE_LEVELS", "1,8,64,256,512").split(","))
# the stages alone: at these levels both (e.g. 1,2 for the low-load tail), else preprocess at 256,
# detector at 128 and 256
STAGE_LEVELS = (
    (tuple(int(c) for c in os.environ["STAGE_LEVELS"].split(",")),) if os.environ.get("STAGE_LEVELS") else None
)


def _inputs(photos: list[Path]) -> tuple[Path, Path]:
    """perf_analyzer's data: the photos' JPEG bytes, and 16 letterboxed for the detector alone."""
    from benchmarks.bench import detector_input
    from benchmarks.perf_input import perf_input

    SCRATCH.mkdir(parents=True, exist_ok=True)
    jpegs, letterboxed = SCRATCH / "perf_input.json", SCRATCH / "detector_input.json"
    if not jpegs.exists():
        jpegs.write_text(json.dumps(perf_input(photos)))
        detector_input(photos[:16], VARIANTS[_model()], letterboxed)
    return jpegs, letterboxed


def _model() -> str:
    return json.loads((DATA / "reference.json").read_text())["model"]


def _perf(url: str, model: str, data: Path, c: int, shapes: list[str], out_dir: Path, extra=()) -> tuple[dict, str]:
    from benchmarks import bench as b

    b.MEASURE_SECONDS = float(os.environ.get("MEASURE_SECONDS", "2"))
    before = triton_statistics(url)
    try:
        result, command = b.perf_analyzer(url.replace("18000", "18001"), model, data, c, shapes, SCRATCH, extra)
    except Exception as e:
        return {"error": str(e)[-600:], "errors": "perf_analyzer failed"}, ""
    # perf_analyzer stops at the first failed request: a result means every request was answered
    return {**result, "errors": 0, "triton_statistics": statistics_between(before, triton_statistics(url))}, command


def bench(photos: list[Path], out_dir: Path) -> dict:
    """perf_analyzer (gRPC) on the FP16 GPU ensemble and on each of its stages alone."""
    model = _model()
    jpegs, letterboxed = _inputs(photos)
    rows, commands = [], {}
    stage_levels = STAGE_LEVELS or ((256,), (128, 256))
    stages = [
        ("ensemble", model, jpegs, ["image:1"], (), ENSEMBLE_LEVELS),
        ("stage: preprocess (GPU)", "preprocess", jpegs, ["image:1"], (), stage_levels[0]),
        # CUDA shared memory: the detector's inputs reach it in GPU memory, as from preprocess
        (
            f"stage: detector ({RUNTIME}, input in CUDA shared memory)",
            VARIANTS[model].detector,
            letterboxed,
            [],
            ("--shared-memory=cuda",),
            stage_levels[-1],
        ),
    ]
    with served(out_dir) as url:
        for path, name, data, shapes, extra, levels in stages:
            for c in levels:
                result, commands[path] = _perf(url, name, data, c, shapes, out_dir, extra)
                rows.append({"path": path, "concurrency": c, **result})
                print({k: v for k, v in rows[-1].items() if k != "triton_statistics"}, flush=True)
    return {"rows": rows, "commands": commands}


def runtimes(photos: list[Path], out_dir: Path) -> dict:
    """Each GPU detector runtime in one run (RUNTIMES: "name" or "name:N", N detector instances): its
    FP16 ensemble's accuracy and perf_analyzer at ENSEMBLE_LEVELS (with Triton's statistics per model),
    on one server; FP32's accuracy for the first. Each runtime's row is written as it ends
    (runtimes.json), so a run stopped at its time limit keeps those done."""
    model = _model()
    jpegs, _ = _inputs(photos)
    report = {}
    for entry in os.environ.get("RUNTIMES", ",".join(GPU_TARGETS)).split(","):
        runtime, _, instances = entry.partition(":")
        repository = {p: REPOSITORY[p] if runtime == RUNTIME else _repository(runtime, p) for p in ("fp16", "fp32")}
        if instances:
            repository["fp16"] = _with_settings(_repository(runtime, "fp16"), 0, int(instances))
        row = {}
        if runtime == GPU_TARGETS[0] and not instances:
            with served(out_dir, repository["fp32"]) as url:
                row["fp32"] = ensemble_accuracy(photos, url)
            print(entry, "fp32", row["fp32"]["match"], flush=True)
        with served(out_dir, repository["fp16"]) as url:
            row["fp16"] = ensemble_accuracy(photos, url)
            print(entry, "fp16", row["fp16"]["match"], flush=True)
            for c in ENSEMBLE_LEVELS:
                row[str(c)], row["command"] = _perf(url, model, jpegs, c, ["image:1"], out_dir)
                print(entry, c, {k: v for k, v in row[str(c)].items() if k != "triton_statistics"}, flush=True)
        report[entry] = row
        (out_dir / "runtimes.json").write_text(json.dumps(report, indent=1))
    return report


MULTI_GPU_LEVELS = tuple(int(c) for c in os.environ.get("MULTI_GPU_LEVELS", "256,512").split(","))
ANSWER_ROUNDS = int(os.environ.get("ANSWER_ROUNDS", "2"))


@contextlib.contextmanager
def _environment(**values: str | None):
    """os.environ with these values (None: unset) inside, for served() and gpu_server_args()."""

    def put(settings: dict[str, str | None]):
        for name, value in settings.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    saved = {k: os.environ.get(k) for k in values}
    put(values)
    try:
        yield
    finally:
        put(saved)


def _answers(url: str, model: str, photos: list[Path], requests: list[list[int]], in_flight: int) -> list:
    """The ensemble's answers to these requests (photo indices each), `in_flight` at a time."""
    data = [p.read_bytes() for p in photos]
    outputs = VARIANTS[model].outputs

    def one(request: list[int]) -> list[Detections]:
        result = _infer(url, model, [data[i] for i in request])
        return [Detections.from_outputs(*(result[s.name][row] for s in outputs)) for row in range(len(request))]

    with ThreadPoolExecutor(in_flight) as pool:
        return list(pool.map(one, requests))


def _smi(*query: str) -> list[str]:
    done = subprocess.run(["nvidia-smi", *query, "--format=csv,noheader"], capture_output=True, text=True)
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def multi_gpu(photos: list[Path], out_dir: Path) -> dict:
    """The FP16 ensemble on one GPU and on every GPU of the machine, in one run (module docstring)."""
    from multi_gpu import GpuSampler, answer_differences, instances_by_device, scaling, windows

    model = _model()
    jpegs, _ = _inputs(photos)
    gpus = visible_gpu_count()
    per_round = windows(len(photos), VARIANTS[model].max_batch_size)
    requests = per_round * ANSWER_ROUNDS
    in_flight = max(8, 4 * gpus)  # two requests for each detector instance (2 a GPU)
    names = [[photos[i].name for i in r] for r in requests]
    # every GPU CUDA_VISIBLE_DEVICES leaves (all where unset), against the first of them alone
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    first = visible.split(",")[0].strip() if visible else "0"
    settings = ("CUDA_VISIBLE_DEVICES", "SETTINGS", "MULTI_GPU_LEVELS", "ANSWER_ROUNDS")
    env = " ".join(f"{k}={os.environ[k]}" for k in settings if k in os.environ)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "gpu": (_smi("--query-gpu=name") or ["?"])[0],
        "gpus": gpus,
        "single_img_s": None,
        "multi_img_s": None,
        "scaling": None,
        "answers_equal": None,
        "command": f"{env + ' ' if env else ''}STEPS=multi_gpu bash tests/device/run.sh",
        "gpu_list": _smi("--query-gpu=index,name,uuid,pci.bus_id"),
        "model": model,
        "runtime": RUNTIME,
        "repository": REPOSITORY["fp16"].name,
        "answer_requests": {"requests": len(requests), "images_each": len(requests[0]), "in_flight": in_flight},
    }
    answers, log = {}, out_dir / "tritonserver.log"
    for label, devices in (("single", first), ("multi", visible)):
        run = report[label] = {"CUDA_VISIBLE_DEVICES": devices}
        offset = log.stat().st_size if log.exists() else 0
        try:
            with _environment(CUDA_VISIBLE_DEVICES=devices):
                run["server_flags"] = list(gpu_server_args())
                with served(out_dir, ready_s=240 + 60 * gpus) as url:
                    started = time.perf_counter()
                    answers[label] = _answers(url, model, photos, requests, in_flight)
                    run["answer_seconds"] = round(time.perf_counter() - started, 1)
                    run["levels"] = {}
                    for c in MULTI_GPU_LEVELS:
                        with GpuSampler() as sampler:
                            result, report["perf_analyzer"] = _perf(url, model, jpegs, c, ["image:1"], out_dir)
                        run["levels"][str(c)] = {**result, "gpu_utilisation": sampler.summary()}
                        print(label, c, result.get("images_per_s"), sampler.summary(), flush=True)
                    run["triton_statistics"] = {
                        name: {k: m.get(k) for k in ("inference_count", "execution_count")}
                        for name, m in triton_statistics(url).items()
                    }
                    run["gpu_processes"] = _smi("--query-compute-apps=gpu_bus_id,pid,used_memory")
        except Exception:
            import traceback

            run["error"] = traceback.format_exc()[-2000:]
        run["instances"] = instances_by_device(log.read_bytes()[offset:].decode(errors="replace"))
        (out_dir / "multi_gpu.json").write_text(json.dumps(report, indent=1))  # what ran so far
    if "levels" in report["single"] and "levels" in report["multi"]:
        report.update(scaling(report["single"]["levels"], report["multi"]["levels"], gpus))
    if "single" in answers:
        n = len(per_round)  # request k and k + n carry the same photos
        report["single_vs_single"] = answer_differences(answers["single"][n:], answers["single"][:-n], names[n:])
    if "single" in answers and "multi" in answers:
        report["multi_vs_single"] = answer_differences(answers["multi"], answers["single"], names)
        report["answers_equal"] = report["multi_vs_single"]["differing"] == 0
    (out_dir / "multi_gpu.json").write_text(json.dumps(report, indent=1))
    return report


def network(photos: list[Path]) -> dict:
    """yolo11n's network alone in PyTorch (FP16, channels_last, Ultralytics' fused module), one CUDA
    graph per batch size, input already in GPU memory: the ceiling of the detector stage. Also the
    whole PyTorch detector per batch, as the served model runs it (the graph with the post-processing
    in it, the outputs copied to host memory), and with the post-processing run eagerly after the
    network's graph instead."""
    sys.path[:0] = ["/opt/ultra", "/opt/torchshim"]
    import torch

    from yolo_triton.torch_detector import Detector

    v = VARIANTS[_model()]
    sizes = (1, 8, 64, 128)
    detector = Detector(str(DATA / "weights" / v.weights), v, torch.device("cuda:0"), "fp16", sizes)
    images = torch.from_numpy(
        np.stack(
            [
                CpuPreprocessor(IMGSZ).letterbox(CpuPreprocessor(IMGSZ).decode([p.read_bytes()]))[0][0]
                for p in photos[:128]
            ]
        )
    ).cuda()
    letterbox = torch.tensor([[0, 0, 1, 1, IMGSZ, IMGSZ]] * 128, dtype=torch.float32)
    rows = {}
    for size in sizes:
        graph = detector.graphs[size].graph

        def replay():
            graph.replay()
            torch.cuda.synchronize()

        def whole():
            detector(images[:size], letterbox[:size])

        def eager_postprocessing():  # the network's graph, then postprocess() eagerly (before 2026-12-06)
            _graph_then_eager(detector, images[:size], letterbox[:size])

        rows[str(size)] = {
            "network_cuda_graph_img_s": round(_rate(replay, size, 2.0), 1),
            "detector_img_s": round(_rate(whole, size, 2.0), 1),
            "detector_eager_postprocessing_img_s": round(_rate(eager_postprocessing, size, 2.0), 1),
        }
        print(size, rows[str(size)], flush=True)
    return {"torch": torch.__version__, "precision": "fp16", "rows": rows}


def _graph_then_eager(detector, images, letterbox) -> list:
    """The detector as it ran before its graphs held the post-processing: the network's graph, then
    postprocess() eagerly, one copy to host memory."""
    import torch

    from yolo_triton.torch_detector import pack, postprocess, unpack

    with torch.inference_mode():
        g = detector.graphs[min(s for s in detector.graphs if s >= len(images))]
        g.images[: len(images)].copy_(images)
        g.graph.replay()
        found = postprocess(g.output0[: len(images)], letterbox.cuda(), detector.variant)
        return unpack(pack(found).cpu().numpy(), detector.variant.max_detections)


def _percentiles(samples_ms: list[float]) -> dict:
    return {f"p{q}_ms": round(float(np.percentile(samples_ms, q)), 3) for q in (50, 90, 99)} | {
        "max_ms": round(max(samples_ms), 3)
    }


def latency(photos: list[Path]) -> dict:
    """Concurrency 1 inside one process, as a pytorch-gpu detector instance runs an execution of one
    photo (LATENCY_RUNS of them, the photos in turn): milliseconds of decoding (nvImageCodec), of the
    letterbox kernel, of the detector (its graph with the post-processing, the copy out), of the same
    with the post-processing eager after the network's graph, and of the whole execution; p50, p90,
    p99, max. Triton's share of perf_analyzer's latency is the rest."""
    sys.path[:0] = ["/opt/ultra", "/opt/torchshim"]
    import torch

    from yolo_triton.batch_preprocessing import BatchPreprocessor
    from yolo_triton.targets import padded_batch_sizes
    from yolo_triton.torch_detector import Detector

    v = VARIANTS[_model()]
    torch.backends.cudnn.benchmark = True
    stream = torch.cuda.Stream()
    preprocess = BatchPreprocessor(v.imgsz, False, "gpu", None, 0)
    with torch.cuda.stream(stream):
        detector = Detector(
            str(DATA / "weights" / v.weights), v, torch.device("cuda:0"), "fp16", padded_batch_sizes(v.max_batch_size)
        )
    jpegs = [p.read_bytes() for p in photos]
    stages = ("decode", "letterbox", "detector", "detector_eager_postprocessing", "execution")
    times: dict[str, list[float]] = {k: [] for k in stages}
    runs = int(os.environ.get("LATENCY_RUNS", "1000"))
    impl = preprocess.impl
    with torch.cuda.stream(stream):
        for i in range(runs + 20):  # the first 20 unmeasured
            data = jpegs[i % len(jpegs)]
            t0 = time.perf_counter()
            with impl.device, preprocess.stream:
                decoded = impl.decode([data], preprocess.stream)
                preprocess.stream.synchronize()
                t1 = time.perf_counter()
                batch, params = impl.letterbox(decoded, preprocess.stream)
                preprocess.stream.synchronize()
            t2 = time.perf_counter()
            detector(torch.from_dlpack(batch), torch.from_numpy(params))
            t3 = time.perf_counter()
            _graph_then_eager(detector, torch.from_dlpack(batch), torch.from_numpy(params))
            t4 = time.perf_counter()
            ((images, rows),) = preprocess([[data]])  # the execution as the model runs it
            detector(torch.from_dlpack(images), torch.from_numpy(rows))
            t5 = time.perf_counter()
            if i >= 20:
                for key, ms in zip(times, ((t1 - t0), (t2 - t1), (t3 - t2), (t4 - t3), (t5 - t4))):
                    times[key].append(ms * 1000)
    return {"runs": runs, "precision": "fp16", **{k: _percentiles(v) for k, v in times.items()}}


def _gpu_memory_parts() -> dict[str, float]:
    """MiB: the GPU's used memory (this process is its only user in this step), CuPy's pool (held, and
    in use), PyTorch's reserved memory; the rest is the CUDA context and what nvImageCodec and its
    decoders hold."""
    import torch

    free, total = cp.cuda.runtime.memGetInfo()
    pool = cp.get_default_memory_pool()
    return {
        "used": round((total - free) / 2**20, 1),
        "cupy_pool": round(pool.total_bytes() / 2**20, 1),
        "cupy_in_use": round(pool.used_bytes() / 2**20, 1),
        "torch_reserved": round(torch.cuda.memory_reserved() / 2**20, 1),
    }


def gpu_memory(photos: list[Path]) -> dict:
    """Where a pytorch-gpu detector instance's GPU memory goes over MEMORY_EXECUTIONS executions of
    mixed requests (1-3 photos each, every 4th with a bad row, up to 128 images an execution, as in
    the soak), inside one process, _gpu_memory_parts every 50 executions, in trials (MEMORY_TRIALS),
    each with a new preprocessor: decode (nvImageCodec alone), letterbox (decode and letterbox),
    detector (the whole execution), and name:gc (a full garbage collection after each execution)."""
    sys.path[:0] = ["/opt/ultra", "/opt/torchshim"]
    import gc

    import torch

    from yolo_triton.batch_preprocessing import BatchPreprocessor
    from yolo_triton.preprocessing import ImageError
    from yolo_triton.targets import padded_batch_sizes
    from yolo_triton.torch_detector import Detector

    v = VARIANTS[_model()]
    torch.backends.cudnn.benchmark = True
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        detector = Detector(
            str(DATA / "weights" / v.weights), v, torch.device("cuda:0"), "fp16", padded_batch_sizes(v.max_batch_size)
        )
    jpegs = [p.read_bytes() for p in photos]
    executions = int(os.environ.get("MEMORY_EXECUTIONS", "500"))

    def requests_of(rng) -> list:
        requests, count = [], 0
        stop = rng.choice([1 / 2, 1 / 8, 1 / 48])  # executions of a few, tens, ~100 images
        while True:
            rows = [int(k) for k in rng.integers(0, len(jpegs), 1 + int(rng.integers(0, 3)))]
            if count + len(rows) > v.max_batch_size or (requests and rng.random() < stop):
                return requests
            payloads = [jpegs[k] for k in rows]
            if rng.random() < 0.25:
                payloads.append(payloads[0][: len(payloads[0]) // 3] if rng.random() < 0.5 else b"")
            requests.append(payloads)
            count += len(rows)

    def decode(preprocess, requests):
        with preprocess.impl.device, preprocess.stream:
            preprocess.impl.decode([d for rows in requests for d in rows], preprocess.stream)
            preprocess.stream.synchronize()

    def detect(preprocess, requests):
        outcomes = [o for o in preprocess(requests) if not isinstance(o, ImageError)]
        if outcomes:
            with torch.cuda.stream(stream):
                detector(
                    [torch.from_dlpack(o[0]) for o in outcomes],
                    torch.from_numpy(np.concatenate([o[1] for o in outcomes])),
                )

    work = {"decode": decode, "letterbox": lambda preprocess, requests: preprocess(requests), "detector": detect}
    report = {"executions": executions, "start": _gpu_memory_parts()}
    for trial in os.environ.get("MEMORY_TRIALS", "decode,letterbox,detector,detector:gc").split(","):
        name, _, collect = trial.partition(":")
        preprocess = BatchPreprocessor(v.imgsz, False, "gpu", None, 0, warm_up_batch=v.max_batch_size)
        rng, samples = np.random.default_rng(0), [{"execution": 0, **_gpu_memory_parts()}]
        for i in range(1, executions + 1):
            work[name](preprocess, requests_of(rng))
            if collect:
                gc.collect()
            if i % 50 == 0:
                samples.append({"execution": i, **_gpu_memory_parts()})
        report[trial] = samples
        print(trial, samples[0], samples[len(samples) // 2], samples[-1], flush=True)
        del preprocess
        gc.collect()
        cp.get_default_memory_pool().free_all_blocks()
    return report


def decoders(photos: list[Path], out_dir: Path) -> dict:
    """The FP16 ensemble with nvImageCodec's hardware JPEG decoder left out (GPUs without one, such as
    the RTX A6000): the parameter decoders of the model that decodes (preprocess, or pytorch-gpu's
    detector) = the CUDA and hybrid decoders only."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    repo = SCRATCH / "no_hardware_decoder"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(REPOSITORY["fp16"], repo)
    for path in repo.glob("*/config.pbtxt"):
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        if config.name == "preprocess" or "preprocess_device" in config.parameters:
            config.parameters["decoders"].string_value = "GPU_ONLY,HYBRID_CPU_GPU"
            path.write_text(text_format.MessageToString(config, as_utf8=True))
    jpegs, _ = _inputs(photos)
    rows = {}
    with served(out_dir, repo) as url:
        for c in (1, 64, 256):
            rows[str(c)] = _perf(url, _model(), jpegs, c, ["image:1"], out_dir)[0]
            print("no hardware decoder", c, {k: v for k, v in rows[str(c)].items() if k != "triton_statistics"})
    log = (out_dir / "tritonserver.log").read_text(errors="replace").splitlines()
    decoding = [line for line in log if "preprocess:" in line or "decoding and letterboxing" in line]
    return {"rows": rows, "preprocess_log": decoding[-2:]}


def readonly_home(photos: list[Path]) -> dict:
    """The GPU preprocess on a read-only root filesystem: HOME unwritable, CUPY_CACHE_DIR (as the
    chart and compose set it) on a writable path: the letterbox kernel still builds."""
    results = {}
    for label, extra in (
        ("HOME unwritable, no CUPY_CACHE_DIR", {}),
        ("with CUPY_CACHE_DIR", {"CUPY_CACHE_DIR": "/tmp/cupy-cache"}),
    ):
        env = {k: v for k, v in os.environ.items() if k != "CUPY_CACHE_DIR"}
        env.update(HOME="/proc/nonexistent", **extra)
        code = (
            f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "import cupy as cp\n"
            "from yolo_triton.gpu_preprocessing import GpuPreprocessor\n"
            "g, s = GpuPreprocessor(640), cp.cuda.Stream()\n"
            f"b, p = g.letterbox(g.decode([open({str(photos[0])!r}, 'rb').read()], s), s)\n"
            "s.synchronize()\nprint(b.shape)"
        )
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        results[label] = {"rc": run.returncode, "out": (run.stdout + run.stderr)[-400:]}
    return results


def _with_settings(source: Path, pre: int, det: int) -> Path:
    """A copy of a repository with other instance counts (preprocess, detector)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    repo = SCRATCH / f"{source.name}_{pre}_{det}"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(source, repo)
    for path in repo.glob("*/config.pbtxt"):
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        if config.name == "preprocess":
            config.instance_group[0].count = pre
        elif config.name.endswith("_detector"):
            config.instance_group[0].count = det
        path.write_text(text_format.MessageToString(config, as_utf8=True))
    return repo


def tuning(photos: list[Path], out_dir: Path) -> dict:
    """The FP16 ensemble at concurrency 256 and 512 with other instance counts (TUNE: "pre,det;...");
    the best one becomes the repositories of the later steps (SETTINGS=pre,det sets them without tuning)."""
    model = _model()
    jpegs, _ = _inputs(photos)
    results = []
    for setting in os.environ.get("TUNE", "4,1;4,2;8,2;8,3").split(";"):
        pre, det = (int(x) for x in setting.split(","))
        row = {"preprocess_instances": pre, "detector_instances": det}
        with served(out_dir, _with_settings(REPOSITORY["fp16"], pre, det)) as url:
            for c in (1, 256, 512):
                row[str(c)] = _perf(url, model, jpegs, c, ["image:1"], out_dir)[0]
        results.append(row)
        print(
            {
                k: (v if not isinstance(v, dict) else (v.get("images_per_s"), v.get("p50_ms"), v.get("p99_ms")))
                for k, v in row.items()
            },
            flush=True,
        )
    best = max(results, key=lambda r: max(r[c].get("images_per_s", 0) for c in ("256", "512")))
    _use_settings(best["preprocess_instances"], best["detector_instances"])
    return {"rows": results, "chosen": {k: best[k] for k in ("preprocess_instances", "detector_instances")}}


def _use_settings(pre: int, det: int) -> None:
    for precision in ("fp16", "fp32"):
        REPOSITORY[precision] = _with_settings(_repository(RUNTIME, precision), pre, det)
    print(f"settings: preprocess x{pre}, detector x{det}", flush=True)


KERNEL_CHOICE: dict = {}


def kernel(photos: list[Path]) -> dict:
    """The FP16 detector graph in ONNX Runtime alone (CUDA EP, IO binding, input already in GPU
    memory, one session per batch size as the served model): the ceiling of the detector stage."""
    import onnxruntime as ort

    path = REPOSITORY["fp16"] / VARIANTS[_model()].detector / "1" / "model.onnx"
    stream = cp.cuda.Stream(non_blocking=True)
    cuda = {"device_id": 0, "user_compute_stream": str(stream.ptr), "use_tf32": "0"}
    rates = {}
    for label, extra in (("NCHW", {}), ("prefer_nhwc", {"prefer_nhwc": "1"})):
        for batch in (1, 32, 64, 128):
            try:
                session = ort.InferenceSession(str(path), providers=[("CUDAExecutionProvider", {**cuda, **extra})])
            except Exception as e:
                rates[label] = f"{type(e).__name__}: {e}"[:300]
                break
            images = cp.full((batch, 3, IMGSZ, IMGSZ), 114, cp.uint8)
            params = cp.asarray(np.tile(np.array([0, 0, 1, 1, IMGSZ, IMGSZ], np.float32), (batch, 1)))
            binding = session.io_binding()
            binding.bind_input("images", "cuda", 0, np.uint8, images.shape, images.data.ptr)
            binding.bind_input("letterbox", "cuda", 0, np.float32, params.shape, params.data.ptr)
            for o in session.get_outputs():
                binding.bind_output(o.name, "cpu")

            def run():
                session.run_with_iobinding(binding)
                stream.synchronize()

            rates[f"{label} {batch}"] = round(_rate(run, batch), 1)
            print("kernel", label, batch, rates[f"{label} {batch}"], flush=True)
    faster = isinstance(rates.get("prefer_nhwc 128"), float) and rates["prefer_nhwc 128"] > 1.05 * rates["NCHW 128"]
    KERNEL_CHOICE["prefer_nhwc"] = "1" if faster else "0"
    return {
        "images_per_s_by_batch": rates,
        "onnxruntime": ort.__version__,
        "prefer_nhwc_chosen": KERNEL_CHOICE["prefer_nhwc"],
    }


def classical(photos: list[Path], out_dir: Path, levels=(1, 16, 64)) -> dict:
    """The ensemble against the classical path, both driven by the same Python load generator
    (threads, gRPC) with the same JPEGs. Classical, as Ultralytics' Triton guide serves a model:
    this machine's CPU decodes and letterboxes (OpenCV), sends FP32 [1, 3, 640, 640] over gRPC to
    the bare network (the same FP16 network on ONNX Runtime GPU, `<model>_bare`), gets output0
    [1, 84, 8400] back and runs NMS (torchvision, best class, per class, top K) and the box
    mapping itself."""
    sys.path.append("/opt/torchshim")
    import torch
    import torchvision
    import tritonclient.grpc as grpc

    from benchmarks.bench import client_load, ensemble_client

    torch.set_num_threads(1)  # one per client thread, as each request is one image
    model = _model()
    v, cpu = VARIANTS[model], CpuPreprocessor(IMGSZ)
    jpegs = [p.read_bytes() for p in photos]

    def classical_work(url):
        local = threading.local()

        def work(data: bytes):
            if not hasattr(local, "client"):
                local.client = grpc.InferenceServerClient(url)
            (image,) = cpu.decode([data])
            batch, params = cpu.letterbox([image])
            tensor = grpc.InferInput("images", list(batch.shape), "FP32")
            tensor.set_data_from_numpy(batch.astype(np.float32) / 255)
            output0 = local.client.infer(f"{model}_bare", [tensor]).as_numpy("output0")
            rows = torch.from_numpy(output0[0].copy()).T  # [N, 4 + C]
            xy, wh = rows[:, :2], rows[:, 2:4]
            boxes = torch.cat((xy - wh / 2, xy + wh / 2), 1)
            best, cls = rows[:, 4:].max(1)
            idx = torch.nonzero(best > v.conf).squeeze(1)
            keep = idx[torchvision.ops.batched_nms(boxes[idx], best[idx], cls[idx], v.iou)[: v.max_detections]]
            pad_x, pad_y, scale_x, scale_y, width, height = params[0]
            mapped = (boxes[keep] - torch.tensor([pad_x, pad_y, pad_x, pad_y])) / torch.tensor(
                [scale_x, scale_y, scale_x, scale_y]
            )
            return torch.minimum(mapped.clamp(min=0), torch.tensor([width, height, width, height]))

        return work

    rows = []
    with served(out_dir) as url:
        grpc_url = url.replace("18000", "18001")
        check = classical_work(grpc_url)(jpegs[0])  # the classical path finds what the ensemble finds
        agree = int(_infer(url, model, [jpegs[0]])["num_dets"][0, 0]) == len(check)
        before = triton_statistics(url)
        for c in levels:
            for path, work in (
                ("ensemble (client)", ensemble_client(grpc_url, model)),
                ("classical (client)", classical_work(grpc_url)),
            ):
                rows.append({"path": path, "concurrency": c, **client_load(work, jpegs, c)})
                print(rows[-1], flush=True)
        stats = statistics_between(before, triton_statistics(url))
    return {"rows": rows, "same_detection_count_on_first_photo": agree, "triton_statistics": stats}


def ultralytics(photos: list[Path], out_dir: Path) -> dict:
    """Ultralytics' predict loop, FP16, files from disk, in the image's PyTorch env (with the
    ultralytics wheel carried to /opt/ultra): batch 1 and 32, images/s."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        PYTHONPATH="/opt/ultra",
        YOLO_OFFLINE="1",
        YOLO_CONFIG_DIR=str(SCRATCH / "ultralytics"),
        REFERENCE_OUT=str(SCRATCH / "reference_gpu_fp32.json"),
    )
    run = subprocess.run(
        [
            "/opt/torch/.venv/bin/python",
            str(ROOT / "tests" / "device" / "ultralytics_predict.py"),
            str(DATA / "weights" / VARIANTS[_model()].weights),
            str(DATA / "images"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    if run.returncode != 0:
        return {"error": (run.stdout + run.stderr)[-2000:]}
    return json.loads(run.stdout.strip().splitlines()[-1])


def _resident_by_mapping(pid: int, top: int = 12) -> dict[str, float]:
    """MiB resident per mapping name of a process (/proc/PID/smaps; unnamed ones together), the
    largest `top`: which of the server's mappings hold its RSS."""
    resident: Counter = Counter()
    name = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
            name = fields[5] if len(fields) > 5 else "[unnamed]"
        elif fields[0] == "Rss:":
            resident[name] += int(fields[1]) / 1024
    return {k: round(v, 1) for k, v in resident.most_common(top)}


def soak_gpu(photos: list[Path], out_dir: Path) -> dict:
    """benchmarks/soak.py on the FP16 GPU ensemble: mixed good and bad requests, every answer
    checked, the server's and stubs' RSS and the GPU's memory sampled (SOAK_REQUESTS, default 100000;
    SOAK_WARMUP, the fraction of them before memory counts, default 0.25); the server's resident
    memory per mapping at the start and the end."""
    from benchmarks.soak import soak

    model = _model()
    requests = int(os.environ.get("SOAK_REQUESTS", "100000"))
    concurrency = int(os.environ.get("SOAK_CONCURRENCY", "64"))
    warmup = float(os.environ.get("SOAK_WARMUP", "0.25"))
    with served(out_dir) as url:
        pid = int(
            subprocess.run(["pgrep", "-x", "tritonserver"], capture_output=True, text=True, check=True).stdout.split()[
                0
            ]
        )
        mappings = {"start": _resident_by_mapping(pid)}
        report = soak(
            url.replace("18000", "18001"),
            model,
            [p.read_bytes() for p in photos],
            requests,
            concurrency,
            pid,
            warmup=warmup,
        )
        mappings["end"] = _resident_by_mapping(pid)
    print(report.summary(), flush=True)
    return {
        "warmup": warmup,
        "server_resident_by_mapping_mib": mappings,
        "summary": report.summary(),
        "requests": requests,
        "concurrency": concurrency,
        "wrong": report.wrong[:50],
        "differing": report.differing,
        "served": report.served,
        "refused": report.refused,
        "seconds": round(report.seconds, 1),
        "growth_percent": report.growth_percent,
        "samples": report.samples,
    }


def rect(photos: list[Path], out_dir: Path) -> dict:
    from benchmarks import bench
    from benchmarks.rect import compare, image_sets

    bench.MEASURE_SECONDS = float(os.environ.get("MEASURE_SECONDS", "2"))
    levels = [int(c) for c in os.environ.get("RECT_LEVELS", "1,16,64").split(",")]
    work = SCRATCH / "rect"
    work.mkdir(parents=True, exist_ok=True)
    sets = image_sets(DATA / "images", work)
    parity = _rect_parity(photos)
    print(parity, flush=True)
    reference = json.loads((DATA / "reference.json").read_text())["rect_detections"]
    with served(out_dir, REPOSITORY["rect"]) as url:
        counts = MatchCounts()  # each photo alone against Ultralytics' default (rect) predict
        for path in photos:
            ref = reference[path.name]
            expected = Detections(
                np.array(ref["boxes"], np.float32).reshape(-1, 4), np.array(ref["scores"]), np.array(ref["classes"])
            )
            result = _infer(url, "rect", [path.read_bytes()])
            counts.add(
                path.name, expected, Detections.from_outputs(*(result[s.name][0] for s in VARIANTS[_model()].outputs))
            )
        print(counts, flush=True)
        grpc = url.replace("18000", "18001")
        started = time.time()
        compare(grpc, url, sets, [max(levels)], work)  # warm-up: the sessions of each batch size and shape
        warm_seconds = time.time() - started
        rows = compare(grpc, url, sets, levels, work)
    return {
        "letterbox_parity": parity,
        "match_rect_vs_ultralytics_default_predict": str(counts),
        "warm_up_seconds": round(warm_seconds, 1),
        "rows": rows,
    }


def _rect_parity(photos: list[Path]) -> dict:
    """The rect GPU kernel against the rect CPU letterbox, on the same decoded pixels, one photo at a time."""
    gpu, cpu = GpuPreprocessor(IMGSZ, rect=True), CpuPreprocessor(IMGSZ, rect=True)
    stream = cp.cuda.Stream(non_blocking=True)
    worst, shapes = 0, set()
    with stream:
        for path in photos:
            (image,) = gpu.decode([path.read_bytes()], stream)
            batch, params = gpu.letterbox([image], stream)
            stream.synchronize()
            expected, expected_params = cpu.letterbox([np.ascontiguousarray(cp.asnumpy(cp.asarray(image))[..., ::-1])])
            ours = cp.asnumpy(batch)
            assert ours.shape == expected.shape and np.array_equal(params, expected_params), (
                path.name,
                ours.shape,
                expected.shape,
            )
            worst = max(worst, int(np.abs(ours.astype(int) - expected).max()))
            shapes.add(ours.shape[2:])
            del image, batch  # decoded images go before their decoder (nvImageCodec crashes otherwise)
    return {"photos": len(photos), "shapes": len(shapes), "max_abs_diff": worst}


FUZZ_INPUTS = int(os.environ.get("FUZZ_INPUTS", "20000"))
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "0"))


def _stub_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-f", "triton_python_backend_stub"], capture_output=True, text=True).stdout
    return sorted(int(p) for p in found.split())


def fuzz(photos: list[Path], out_dir: Path) -> dict:
    from fuzz_inputs import fuzz_input
    from gpu_fuzz import decoder_fuzz, fuzz_seeds

    report = {"decoder": decoder_fuzz(out_dir, FUZZ_INPUTS, FUZZ_SEED)}
    print(json.dumps(report["decoder"], indent=1)[:3000], flush=True)
    model, spec = _model(), VARIANTS[_model()]
    rng, seeds = random.Random(f"served/{FUZZ_SEED}"), fuzz_seeds()
    jobs = [fuzz_input(rng, seeds) for _ in range(FUZZ_INPUTS)] + [
        (f"good:{i % 16}", photos[i % 16].read_bytes()) for i in range(FUZZ_INPUTS // 3)
    ]
    rng.shuffle(jobs)

    def send(job):
        try:
            return "answered", _infer(url, model, [job[1]])
        except urllib.error.HTTPError as e:
            return f"HTTP {e.code}", json.loads(e.read()).get("error", "")
        except Exception as e:  # a lost connection, a timeout: the server or a stub in trouble
            return "failed", f"{type(e).__name__}: {e}"[:200]

    tally, failures = Counter(), []
    with served(out_dir) as url:
        alone = {i: _infer(url, model, [photos[i].read_bytes()]) for i in range(16)}
        stubs = _stub_pids()
        started = time.time()
        with ThreadPoolExecutor(32) as pool:
            for (kind, data), (outcome, answer) in zip(jobs, pool.map(send, jobs)):
                if kind.startswith("good:"):
                    counts = MatchCounts()
                    own = alone[int(kind[5:])]
                    if outcome == "answered":
                        counts.add(
                            kind,
                            *(Detections.from_outputs(*(r[s.name][0] for s in spec.outputs)) for r in (own, answer)),
                        )
                    fine = outcome == "answered" and counts.matched == counts.reference == counts.ours
                    tally["good photos answered with their own detections" if fine else "good photos harmed"] += 1
                    if not fine:
                        failures.append(
                            {
                                "kind": kind,
                                "outcome": outcome,
                                "answer": str(counts) if outcome == "answered" else answer,
                            }
                        )
                elif outcome == "answered":
                    n = int(answer["num_dets"][0][0])
                    fine = 0 <= n <= spec.max_detections and np.isfinite(answer["det_boxes"]).all()
                    tally["fuzz inputs answered" if fine else "fuzz inputs answered wrongly"] += 1
                elif outcome == "HTTP 400" and answer:
                    tally["fuzz inputs refused with a message"] += 1
                else:
                    tally["fuzz inputs failed otherwise"] += 1
                    failures.append(
                        {
                            "kind": kind,
                            "outcome": outcome,
                            "answer": answer[:300],
                            "data": base64.b64encode(data[:20000]).decode(),
                        }
                    )
        seconds = time.time() - started
        after = _stub_pids()
        ready = urllib.request.urlopen(f"http://{url}/v2/health/ready").status == 200
        last = _infer(url, model, [photos[0].read_bytes()])
    report["served"] = {
        "fuzz_inputs": FUZZ_INPUTS,
        "good_photos": FUZZ_INPUTS // 3,
        "seed": FUZZ_SEED,
        "concurrency": 32,
        "seconds": round(seconds, 1),
        "outcomes": dict(tally),
        "failures": failures[:20],
        "stubs_same_processes": stubs == after,
        "stubs": [stubs, after],
        "ready_after": ready,
        "photo_after_has_detections": int(last["num_dets"][0][0]) > 0,
    }
    return report


def main():
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = sorted((DATA / "images").glob("*.jpg"))
    gpu = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True
    ).stdout.strip()
    from nvidia import nvimgcodec

    report = {
        "date": time.strftime("%Y-%m-%d"),
        "gpu": gpu,
        "cpu_cores": os.cpu_count(),
        "python": platform.python_version(),
        "cupy": cp.__version__,
        "nvimgcodec": nvimgcodec.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }
    steps = {
        "letterbox_parity": lambda: letterbox_parity(photos),
        "throughput": lambda: throughput(photos),
        "ensemble": lambda: ensemble(photos, out_dir),
        "bench": lambda: bench(photos, out_dir),
        "tuning": lambda: tuning(photos, out_dir),
        "kernel": lambda: kernel(photos),
        "classical": lambda: classical(photos, out_dir),
        "ultralytics": lambda: ultralytics(photos, out_dir),
        "soak": lambda: soak_gpu(photos, out_dir),
        "fuzz": lambda: fuzz(photos, out_dir),
        "rect": lambda: rect(photos, out_dir),
        "runtimes": lambda: runtimes(photos, out_dir),
        "network": lambda: network(photos),
        "latency": lambda: latency(photos),
        "gpu_memory": lambda: gpu_memory(photos),
        "decoders": lambda: decoders(photos, out_dir),
        "readonly_home": lambda: readonly_home(photos),
        "multi_gpu": lambda: multi_gpu(photos, out_dir),
    }
    chosen = sys.argv[2].split(",") if len(sys.argv) > 2 else ["ensemble", "bench"]
    if os.environ.get("SETTINGS"):
        pre, det = os.environ["SETTINGS"].split(",")
        _use_settings(int(pre), int(det))
        report["settings"] = os.environ["SETTINGS"]
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
