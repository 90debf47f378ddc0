"""What gpu_checks.py's `multi_gpu` step computes from its measurements, apart from the GPU work (no
CuPy, no GPU: tests/unit/test_multi_gpu_helpers.py runs these on the CPU).

The step serves one repository twice in one run, on every GPU of the machine and with
CUDA_VISIBLE_DEVICES=0, and sends both servers the same requests: requests of the model's largest
batch (`windows`), so that each is one execution of the detector on its own (the dynamic batcher
cannot add another to it) and an image's answer depends on nothing but its own pixels and the GPU
instance that ran it; requests of fewer images are batched with whatever else is in flight, and
batches of other sizes move scores a little on the GPU (benchmarks/soak.py's `differing`).
"""

from __future__ import annotations

import re
import subprocess
import threading

from matching import Detections, unpaired

# the targets: ensemble throughput on N GPUs against one GPU in the same run
TARGET_SCALING = {2: 1.8, 4: 3.5}


def windows(photos: int, batch: int, step: int = 8) -> list[list[int]]:
    """Requests of `batch` photos each (indices, wrapping around), one starting at every `step`-th
    photo: every photo in several requests, at other rows and beside other photos."""
    return [[(start + k) % photos for k in range(batch)] for start in range(0, photos, step)]


def answer_differences(
    a: list[list[Detections]], b: list[list[Detections]], names: list[list[str]] | None = None
) -> dict:
    """Two servers' answers to the same requests, row by row (matching.unpaired: same class, score
    within 1e-5, box within 0.01 px, in any order): how many answers differ, how many detections have
    no twin, and the first differing rows."""
    rows = differing = lost = 0
    first = []
    for r, (ra, rb) in enumerate(zip(a, b, strict=True)):
        for k, (x, y) in enumerate(zip(ra, rb, strict=True)):
            rows += 1
            u = unpaired(x, y)
            if u:
                differing += 1
                lost += u
                if len(first) < 10:
                    first.append({"request": r, "row": k, "photo": names[r][k] if names else None, "unpaired": u})
    return {"answers": rows, "differing": differing, "unpaired_detections": lost, "first": first}


def best_img_s(levels: dict[str, dict]) -> float | None:
    """The highest images/s of perf_analyzer's levels ({concurrency: its result}); None if none ran."""
    rates = [r["images_per_s"] for r in levels.values() if isinstance(r.get("images_per_s"), (int, float))]
    return max(rates) if rates else None


def scaling(single: dict[str, dict], multi: dict[str, dict], gpus: int) -> dict:
    """Throughput on `gpus` GPUs against one: the best level each way, and level by level."""
    one, many = best_img_s(single), best_img_s(multi)
    ratio = round(many / one, 3) if one and many else None
    target = TARGET_SCALING.get(gpus)
    by_level = {}
    for c in single:
        a, b = single[c].get("images_per_s"), multi.get(c, {}).get("images_per_s")
        by_level[c] = round(b / a, 3) if a and b else None
    return {
        "single_img_s": one,
        "multi_img_s": many,
        "scaling": ratio,
        "scaling_by_concurrency": by_level,
        "target_scaling": target,
        "target_met": None if target is None or ratio is None else ratio >= target,
    }


_INSTANCE = re.compile(r"TRITONBACKEND_ModelInstanceInitialize: (\S+) \((?:(\w+) )?device (-?\d+)\)")


def instances_by_device(log: str) -> dict[str, dict[str, int]]:
    """Triton's log of one start: each model's instances by where they run ("GPU 1": 2), from the
    backends' TRITONBACKEND_ModelInstanceInitialize lines (instance names are <model>_<group>_<n>)."""
    found: dict[str, dict[str, int]] = {}
    for name, kind, device in _INSTANCE.findall(log):
        model = re.sub(r"_\d+_\d+$", "", name)
        where = f"{kind or 'device'} {device}"
        found.setdefault(model, {})
        found[model][where] = found[model].get(where, 0) + 1
    return {m: dict(sorted(d.items())) for m, d in sorted(found.items())}


GPU_QUERY = ["nvidia-smi", "--query-gpu=index,utilization.gpu,memory.used", "--format=csv,noheader,nounits"]


def parse_gpu_query(text: str) -> list[tuple[int, float, float]]:
    """GPU_QUERY's lines -> (index, utilisation %, memory used MiB); lines it cannot read are left out
    ("[N/A]", a driver message)."""
    rows = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            rows.append((int(parts[0]), float(parts[1]), float(parts[2])))
        except (IndexError, ValueError):
            continue
    return rows


def utilisation(samples: list[list[tuple[int, float, float]]]) -> dict[str, dict]:
    """Per GPU (nvidia-smi's index, every GPU of the machine whatever CUDA_VISIBLE_DEVICES says): the
    mean and highest utilisation and the highest memory used over the samples."""
    per: dict[int, list[tuple[float, float]]] = {}
    for sample in samples:
        for index, util, memory in sample:
            per.setdefault(index, []).append((util, memory))
    return {
        str(i): {
            "samples": len(v),
            "mean_util_percent": round(sum(u for u, _ in v) / len(v), 1),
            "max_util_percent": max(u for u, _ in v),
            "max_memory_mib": max(m for _, m in v),
        }
        for i, v in sorted(per.items())
    }


class GpuSampler:
    """nvidia-smi's utilisation and memory of every GPU, every `period` seconds while in the `with`."""

    def __init__(self, period: float = 0.5):
        self.period, self.samples = period, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            done = subprocess.run(GPU_QUERY, capture_output=True, text=True, timeout=30)
            if done.returncode == 0:
                self.samples.append(parse_gpu_query(done.stdout))
            self._stop.wait(self.period)

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(60)

    def summary(self) -> dict[str, dict]:
        return utilisation(self.samples)
