"""Soak: a long run of mixed good and bad requests against a running server, with the server's
memory sampled throughout; every answer is checked against its own request.

    python -m benchmarks.soak --url 127.0.0.1:8001 --model yolov11_nano \
        --images ../shared/data/coco128/images/train2017 --requests 100000 --concurrency 16 \
        --server-pid $(pgrep -x tritonserver) --out build/soak.json

Request i carries 1 to 3 photos (chosen by i) and, every --bad-every-th request, one bad payload
(empty, random bytes, truncated JPEG, in turn). A request with a bad image must be refused with a
message naming it; any other must return, for each of its photos, that photo's detections:
exactly as it got them alone at the start (every detection scoring 0.01 above conf has a twin:
same class, score within 0.005, box within 1 px), or, when not exactly, no more like any other
photo's answer than like its own, by class and IoU >= 0.5 (`differing`: batches of other sizes
may move pixels or scores a little on the GPU). A lost, duplicated or swapped answer is `wrong`.
Memory: tritonserver's RSS (its own anonymous pages and the pages of the stubs' shared-memory
regions apart, and those regions' mapped size), its Python-backend stubs' RSS and (with nvidia-smi) GPU 0's used
memory and the server's and the stubs' GPU memory, sampled every second; growth compares the mean of
the last tenth of the samples with the mean of the tenth just after warm-up (the first quarter
of the requests, --warmup: the stubs' shared-memory regions and ONNX Runtime's arenas reach
their size for the largest batches first).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

BAD_PAYLOADS = {
    "empty": lambda photo: b"",
    "random": lambda photo: np.random.default_rng(len(photo)).integers(0, 256, 2048, np.uint8).tobytes(),
    "truncated": lambda photo: photo[: len(photo) // 3],
}
BAD_MESSAGES = {"empty": "empty input", "random": "cannot decode", "truncated": "truncated JPEG"}


def _nvidia_smi(query: str) -> list[list[str]]:
    """Rows of an nvidia-smi CSV query (no header, no units)."""
    out = subprocess.run(
        ["nvidia-smi", query, "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    return [[field.strip() for field in line.split(",")] for line in out.strip().splitlines()]


def _server_rss_parts(pid: int) -> dict[str, float]:
    """MiB of the server's RSS that are its own (anonymous) memory and that are pages of shared
    memory, and the size of the stubs' shared-memory regions it maps (/dev/shm): those pages become
    resident as the regions' allocator first reaches them, so the shared part grows up to the mapped
    size without anything leaking, where a growth of the anonymous part is the server's own."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    mapped = 0
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[5].startswith("/dev/shm/"):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            mapped += end - start
    return {
        "server_rss_anon": int(status["RssAnon"].split()[0]) / 1024,
        "server_rss_shmem": int(status["RssShmem"].split()[0]) / 1024,
        "server_shm_mapped": mapped / 2**20,
    }


def memory(server_pid: int) -> dict[str, float]:
    """MiB: the server's RSS (and its parts, _server_rss_parts), its stubs' RSS (summed) and, where
    nvidia-smi runs, GPU 0's used memory and the GPU memory of the server's process and of its stubs
    (summed over GPUs), so that a growth can be put on one of them."""
    import psutil

    server = psutil.Process(server_pid)
    stubs = [p for p in server.children(recursive=True) if "triton_python_backend_stub" in p.name()]
    sample = {
        "server_rss": server.memory_info().rss / 2**20,
        **_server_rss_parts(server_pid),
        "stubs_rss": sum(p.memory_info().rss for p in stubs) / 2**20,
    }
    try:  # the whole GPU's used memory: the server is its only user in these runs
        used = float(_nvidia_smi("--query-gpu=memory.used")[0][0])
        by_pid = {int(pid): float(mib) for pid, mib in _nvidia_smi("--query-compute-apps=pid,used_memory")}
        sample.update(  # all three or none: every sample has the same keys
            gpu=used,
            gpu_server=by_pid.get(server_pid, 0.0),
            gpu_stubs=sum(by_pid.get(p.pid, 0.0) for p in stubs),
        )
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        pass
    return sample


def _sample_memory(server_pid: int, start: float, done, samples_out) -> None:
    """memory() every second until `done`, then the samples (seconds since `start`, a monotonic time
    this process shares with its parent) down the pipe."""
    samples = []
    while not done.is_set():
        samples.append((time.monotonic() - start, memory(server_pid)))
        done.wait(1.0)
    samples_out.send(samples)


@dataclass
class SoakReport:
    requests: int = 0
    served: int = 0  # good requests answered, every image with its own detections, exactly
    differing: int = 0  # answered with each image's own detections, but some not exactly as alone
    refused: int = 0  # bad requests refused with the right message
    wrong: list = field(default_factory=list)  # (request, what went wrong): lost, mismatched, unexpected errors
    seconds: float = 0.0
    samples: list = field(default_factory=list)  # (seconds since start, memory dict)
    growth_percent: dict = field(default_factory=dict)

    def summary(self) -> str:
        growth = ", ".join(f"{k} {v:+.2f}%" for k, v in self.growth_percent.items())
        return (
            f"{self.requests} requests in {self.seconds:.0f} s: {self.served} served exactly as each image alone, "
            f"{self.differing} with each image's own detections but not exactly, {self.refused} bad ones refused "
            f"cleanly, {len(self.wrong)} wrong; memory growth after warm-up: {growth}"
        )


def growth(samples: list[tuple[float, dict]], warm_until: float) -> dict[str, float]:
    steady = [s for t, s in samples if t >= warm_until]
    tenth = max(1, len(steady) // 10)
    first, last = steady[:tenth], steady[-tenth:]
    return {
        k: 100 * (np.mean([s[k] for s in last]) / np.mean([s[k] for s in first]) - 1)
        for k in first[0]
        if np.mean([s[k] for s in first]) > 0
    }


def soak(
    url: str,
    model: str,
    photos: list[bytes],
    requests: int,
    concurrency: int,
    server_pid: int,
    bad_every: int = 4,
    protocol: str = "grpc",
    warmup: float = 0.25,
) -> SoakReport:
    from yolo_triton.boxes import box_iou
    from yolo_triton.client.async_detector import image_input, parse_result, tritonclient_module
    from yolo_triton.contract import VARIANTS

    module = tritonclient_module(protocol)
    local = threading.local()

    def infer(payloads):
        if not hasattr(local, "client"):
            local.client = module.InferenceServerClient(url)
        return parse_result(local.client.infer(model, [image_input(payloads, protocol)], client_timeout=120))

    alone = [infer([photo])[0] for photo in photos]  # each photo's own detections, the expectation
    conf = VARIANTS[model].conf

    clear = lambda found: [d for d in found if d.score >= conf + 0.01]  # clear of the conf threshold

    def twins(found, others) -> int:
        """How many of found's clear detections have a twin in others: same class, score within
        0.005, box within 1 px."""
        return sum(
            any(
                o.class_id == d.class_id and abs(o.score - d.score) < 5e-3 and np.allclose(o.box, d.box, atol=1.0)
                for o in others
            )
            for d in clear(found)
        )

    # every photo's detections alone, in one table: a not-exact answer is compared with all of
    # them in one IoU matrix (the per-photo loop made the client, not the server, the bottleneck)
    table = [(p, d) for p, found in enumerate(alone) for d in found]
    table_photo = np.array([p for p, _ in table], dtype=np.int64)
    table_class = np.array([d.class_id for _, d in table])
    table_boxes = np.array([d.box for _, d in table], dtype=np.float64).reshape(-1, 4)
    table_clear = np.array([d.score >= conf + 0.01 for _, d in table], dtype=bool)
    table_count = np.bincount(table_photo[table_clear], minlength=len(photos))

    def likeness(got) -> np.ndarray:
        """Per photo: got's clear detections with a look-alike among the photo's (same class, IoU >= 0.5),
        plus the photo's clear ones with a look-alike in got, minus those without, both ways: highest for
        the photo an answer belongs to, whatever its scores."""
        got_clear = np.array([d.score >= conf + 0.01 for d in got], dtype=bool)
        same = np.array([d.class_id for d in got])[:, None] == table_class[None, :]
        same &= box_iou(np.array([d.box for d in got]), table_boxes) >= 0.5
        hit = np.zeros((len(got), len(photos)), bool)
        rows, columns = np.nonzero(same & got_clear[:, None])
        hit[rows, table_photo[columns]] = True
        seen = same.any(0) & table_clear
        alike = hit.sum(0) + np.bincount(table_photo, weights=seen, minlength=len(photos))
        found = int(got_clear.sum())
        return 2 * alike - found - table_count

    def exact(got, want) -> bool:
        return twins(got, want) == len(clear(got)) and twins(want, got) == len(clear(want))

    def one(i: int):
        chosen = [(i * 7 + k * 13) % len(photos) for k in range(1 + i % 3)]
        payloads = [photos[c] for c in chosen]
        bad = None
        if i % bad_every == bad_every - 1:
            bad = list(BAD_PAYLOADS)[(i // bad_every) % len(BAD_PAYLOADS)]
            payloads.insert(i % (len(payloads) + 1), BAD_PAYLOADS[bad](payloads[0]))
        try:
            answers = infer(payloads)
        except Exception as e:
            if bad and BAD_MESSAGES[bad] in str(e):
                return "refused", None
            return "wrong", f"{'bad ' + bad if bad else 'good'} request failed: {e}"
        if bad:
            return "wrong", f"bad {bad} request was answered"
        if len(answers) != len(chosen):
            return "wrong", f"{len(answers)} answers for {len(chosen)} photos"
        outcome = "served"
        for k, (answer, c) in enumerate(zip(answers, chosen)):
            if exact(answer, alone[c]):
                continue
            # not exactly its photo's answer alone: is it more like another photo's? (a lost,
            # duplicated or swapped answer is another photo's, or an empty one)
            scores = likeness(answer)
            own, scores[c] = scores[c], -np.inf
            other = int(scores.argmax())
            if scores[other] > own:
                brief = lambda found: [
                    (d.class_name, round(d.score, 3), [round(x) for x in d.box]) for d in clear(found)
                ]
                return "wrong", (
                    f"photo {c} (row {k} of {len(chosen)}) got {brief(answer)}, more like photo {other}'s "
                    f"{brief(alone[other])} than its own {brief(alone[c])}"
                )
            outcome = "differing"
        return outcome, None

    report, start = SoakReport(requests=requests), time.monotonic()
    # the sampler in a process of its own: as a thread beside the client's it waited for the GIL, and
    # sampled every few seconds instead of every second at 800 requests/s
    spawn = multiprocessing.get_context("spawn")
    done, (samples_in, samples_out) = spawn.Event(), spawn.Pipe(duplex=False)
    sampler = spawn.Process(target=_sample_memory, args=(server_pid, start, done, samples_out), daemon=True)
    sampler.start()
    warm_until, warm_count = None, max(1, int(requests * warmup))
    with ThreadPoolExecutor(concurrency) as pool:
        for i, (outcome, detail) in enumerate(pool.map(one, range(requests))):
            if outcome == "wrong":
                report.wrong.append((i, detail))
            else:
                setattr(report, outcome, getattr(report, outcome) + 1)
            if i + 1 == warm_count:
                warm_until = time.monotonic() - start
    done.set()
    report.samples = samples_in.recv()
    sampler.join()
    report.seconds = time.monotonic() - start
    report.samples.append((report.seconds, memory(server_pid)))
    report.growth_percent = growth(report.samples, warm_until)
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="127.0.0.1:8001")
    parser.add_argument("--protocol", default="grpc", choices=("grpc", "http"))
    parser.add_argument("--model", default="yolov11_nano")
    parser.add_argument("--images", type=Path, required=True, help="a folder of JPEGs")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--bad-every", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=0.25, help="fraction of the requests before memory counts")
    parser.add_argument("--server-pid", type=int, required=True, help="tritonserver's process id")
    parser.add_argument("--out", type=Path, help="write the report (JSON) here")
    args = parser.parse_args()
    photos = [p.read_bytes() for p in sorted(args.images.glob("*.jpg"))]
    report = soak(
        args.url,
        args.model,
        photos,
        args.requests,
        args.concurrency,
        args.server_pid,
        args.bad_every,
        args.protocol,
        args.warmup,
    )
    print(report.summary())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {**asdict(report), "command": vars(args) | {"images": str(args.images), "out": str(args.out)}},
                indent=1,
                default=str,
            )
        )
    return 0 if not report.wrong else 1


if __name__ == "__main__":
    raise SystemExit(main())
