"""On the GPU machine: the GPU preprocessing (nvImageCodec's hardware, CUDA and hybrid decoders,
the OpenCV fallback, the letterbox kernel) fed hostile inputs, as the `preprocess` model calls it.

    decoder_fuzz(out_dir, inputs, seed)  (gpu_checks.py's fuzz step; the worker is this file)

Batches of 32: 24 inputs of tests/fuzz_inputs.py (the CPU fuzz's generator; its seeds plus two real
photos) mixed with 8 good photos. Every input must end as a letterboxed tensor (the kernel's
pixels within 1 of the CPU letterbox of the same decoded pixels) or its own ImageError naming the
problem; the good photos exactly as when decoded alone. The batches run in a worker process: if it
crashes or stops making progress, the batch is replayed one input at a time to find the culprit,
which is saved (base64) in the report, and the fuzz goes on after it.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fuzz_inputs import fuzz_input, seed_images  # noqa: E402

BATCH, GOOD_PER_BATCH, GOOD_PHOTOS = 32, 8, 16
STALL_SECONDS = 60  # no progress for this long: the decoder hangs
IMGSZ = 640
PHOTOS = ROOT / "build" / "device" / "images"


def _photos() -> list[Path]:
    return sorted(PHOTOS.glob("*.jpg"))


def fuzz_seeds() -> dict[str, bytes]:
    photos = _photos()
    return {**seed_images(), "photo_a": photos[0].read_bytes(), "photo_b": photos[len(photos) // 2].read_bytes()}


def batch_rows(seed: int, index: int, seeds: dict[str, bytes]) -> list[tuple[str, bytes]]:
    """Batch `index` of run `seed`: (kind, bytes) rows, the same wherever and whenever it is made."""
    rng = random.Random(f"{seed}/{index}")
    rows = [fuzz_input(rng, seeds) for _ in range(BATCH - GOOD_PER_BATCH)]
    rows += [(f"good:{i}", b"") for i in rng.sample(range(GOOD_PHOTOS), GOOD_PER_BATCH)]
    rng.shuffle(rows)
    return rows


def worker(out_dir: Path, seed: int, first: int, stop: int, one_by_one: bool) -> None:
    """Batches first..stop-1 (or one batch, input by input); the index reached is written to
    out_dir/progress before each decode, the tallies so far to out_dir/worker_<first>.json after each batch."""
    import cupy as cp
    import numpy as np

    from yolo_triton.gpu_preprocessing import GpuPreprocessor
    from yolo_triton.preprocessing import ImageError, decode, letterbox_into

    gpu = GpuPreprocessor(IMGSZ)
    stream = cp.cuda.Stream(non_blocking=True)
    seeds = fuzz_seeds()
    good = [p.read_bytes() for p in _photos()[:GOOD_PHOTOS]]

    def run(rows):
        with stream:
            images = gpu.decode([data for _, data in rows], stream)
            decoded = [i for i, im in enumerate(images) if not isinstance(im, ImageError)]
            batch, params = gpu.letterbox([images[i] for i in decoded], stream)
            stream.synchronize()
            return images, decoded, cp.asnumpy(batch), params

    alone = [run([("good", data)])[2][0] for data in good]
    # each photo as each of nvImageCodec's decoders makes it alone: which one a photo gets depends on the batch
    by_backend = {}
    for kind in ("HW_GPU_ONLY", "GPU_ONLY", "HYBRID_CPU_GPU"):
        try:
            one = GpuPreprocessor(IMGSZ, backends=(kind,))
            with stream:
                for p, data in enumerate(good):
                    (image,) = one.decode([data], stream)
                    if not isinstance(image, (ImageError, cp.ndarray)):  # not refused, not OpenCV's fallback
                        by_backend.setdefault(p, []).append((kind, cp.asnumpy(one.letterbox([image], stream)[0])[0]))
                stream.synchronize()
        except Exception as e:  # a decoder this GPU does not have
            print(f"{kind}: {e}", flush=True)
    tally, by_kind, messages, failures = Counter(), Counter(), Counter(), []
    progress = os.open(out_dir / "progress", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    for index in range(first, stop):
        rows = [(k, good[int(k[5:])] if k.startswith("good:") else d) for k, d in batch_rows(seed, index, seeds)]
        for at, group in enumerate([[r] for r in rows] if one_by_one else [rows]):
            os.pwrite(progress, f"{index} {at}".ljust(32).encode(), 0)
            try:
                images, decoded, pixels, params = run(group)
            except Exception as e:  # one input must not fail a whole batch
                failures.append(
                    {"batch": index, "row": at if one_by_one else None, "error": f"{type(e).__name__}: {e}"[:300]}
                )
                continue
            row_of = {i: j for j, i in enumerate(decoded)}
            without_fuzz = None  # the batch's photos decoded without its fuzz inputs, made when needed
            for i, (kind, data) in enumerate(group):
                if kind.startswith("good:"):
                    ours = pixels[row_of[i]] if i in row_of else None
                    if ours is not None and np.array_equal(ours, alone[int(kind[5:])]):
                        tally["good photos as decoded alone"] += 1
                        continue
                    if without_fuzz is None:
                        photos_only = [r for r in group if r[0].startswith("good:")]
                        without_fuzz = dict(zip((k for k, _ in photos_only), run(photos_only)[2]))
                    if ours is not None and np.array_equal(ours, without_fuzz[kind]):
                        tally["good photos as decoded in the batch without its fuzz inputs"] += 1
                        continue
                    backend = next(
                        (
                            k
                            for k, px in by_backend.get(int(kind[5:]), [])
                            if ours is not None and np.array_equal(ours, px)
                        ),
                        None,
                    )
                    if backend:
                        tally[f"good photos as {backend} decodes them alone"] += 1
                        continue
                    tally["good photos harmed"] += 1
                    diff = np.abs(ours.astype(int) - without_fuzz[kind]) if ours is not None else None
                    failures.append(
                        {
                            "batch": index,
                            "row": i,
                            "error": "good photo harmed",
                            "kind": kind,
                            "max_diff": None if diff is None else int(diff.max()),
                            "mean_diff": None if diff is None else float(diff.mean()),
                            "vs_alone_max_diff": None
                            if ours is None
                            else int(np.abs(ours.astype(int) - alone[int(kind[5:])]).max()),
                        }
                    )
                    continue
                tally["fuzz inputs"] += 1
                by_kind[kind] += 1
                if i not in row_of:
                    assert str(images[i]), "an ImageError names its problem"
                    tally["refused (ImageError)"] += 1
                    messages[str(images[i]).split(" (")[0].split(":")[0][:60]] += 1
                    continue
                on_gpu = not isinstance(images[i], cp.ndarray)  # OpenCV's fallback images are CuPy arrays
                tally["decoded by nvImageCodec" if on_gpu else "decoded by the OpenCV fallback"] += 1
                rgb = cp.asnumpy(cp.asarray(images[i]))
                expected = np.empty((3, IMGSZ, IMGSZ), np.uint8)
                expected_params = letterbox_into(expected, np.ascontiguousarray(rgb[..., ::-1]))
                diff = int(np.abs(pixels[row_of[i]].astype(int) - expected).max())
                if diff > 1 or not np.array_equal(params[row_of[i]], expected_params):
                    failures.append(
                        {
                            "batch": index,
                            "row": i,
                            "error": f"letterbox differs by {diff}",
                            "kind": kind,
                            "data": base64.b64encode(data[:20000]).decode(),
                        }
                    )
                if on_gpu:
                    try:
                        decode(data)
                    except ImageError:
                        tally["decoded by nvImageCodec, refused by OpenCV"] += 1
        partial = out_dir / f"worker_{first}.partial"
        partial.write_text(json.dumps({"tally": tally, "by_kind": by_kind, "messages": messages, "failures": failures}))
        partial.replace(out_dir / f"worker_{first}.json")


def _run_worker(out_dir: Path, seed: int, first: int, stop: int, one_by_one: bool) -> tuple[str, str, dict]:
    """('done' | 'crash' | 'hang', 'batch row' reached, the tallies of the batches completed)."""
    for stale in (out_dir / "progress", out_dir / f"worker_{first}.json"):
        stale.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, __file__, str(out_dir), str(seed), str(first), str(stop), str(int(one_by_one))]
    )
    last, since = None, time.time()
    while process.poll() is None:
        time.sleep(0.5)
        reached = (out_dir / "progress").read_text().strip() if (out_dir / "progress").exists() else None
        if reached != last:
            last, since = reached, time.time()
        elif time.time() - since > STALL_SECONDS + (60 if reached is None else 0):
            process.kill()
            process.wait()
            break
    tallies = out_dir / f"worker_{first}.json"
    done = json.loads(tallies.read_text()) if tallies.exists() else {}
    if process.returncode == 0:
        return "done", last, done
    return ("hang" if process.returncode == -9 else "crash"), f"{last} (exit {process.returncode})", done


def decoder_fuzz(out_dir: Path, inputs: int, seed: int) -> dict:
    out_dir = out_dir / "decoder_fuzz"
    out_dir.mkdir(parents=True, exist_ok=True)
    batches = -(-inputs // (BATCH - GOOD_PER_BATCH))
    tally, by_kind, messages, failures, incidents = Counter(), Counter(), Counter(), [], []
    started, first = time.time(), 0
    seeds = fuzz_seeds()
    while first < batches:
        outcome, reached, done = _run_worker(out_dir, seed, first, batches, one_by_one=False)
        if reached is None:
            raise RuntimeError(f"the fuzz worker ended before its first batch ({outcome})")
        results = [done]
        first = batches
        if outcome != "done":  # replay the batch it reached input by input: which one crashes or hangs the decoder?
            index = int(reached.split()[0])
            replay, where, alone = _run_worker(out_dir, seed, index, index + 1, one_by_one=True)
            culprit = batch_rows(seed, index, seeds)[int(where.split()[1])] if replay != "done" else None
            incidents.append(
                {
                    "batch": index,
                    "batched": f"{outcome} at {reached}",
                    "alone": f"{replay} at {where}",
                    "culprit_kind": culprit and culprit[0],
                    "culprit": culprit and base64.b64encode(culprit[1]).decode(),
                }
            )
            results.append(alone)
            first = index + 1
        for done in results:
            tally.update(done.get("tally", {}))
            by_kind.update(done.get("by_kind", {}))
            messages.update(done.get("messages", {}))
            failures += done.get("failures", [])
    return {
        "inputs": tally["fuzz inputs"],
        "seed": seed,
        "batch": f"{BATCH - GOOD_PER_BATCH} fuzz + {GOOD_PER_BATCH} good photos",
        "seconds": round(time.time() - started, 1),
        "outcomes": dict(tally),
        "by_kind": dict(by_kind),
        "refusals": dict(messages.most_common(12)),
        "failures": failures[:20],
        "failure_count": len(failures),
        "incidents": incidents,
    }


if __name__ == "__main__":
    worker(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1")
