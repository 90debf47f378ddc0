"""The blocking client: `detect()` and `Detector`, the same code as `AsyncDetector` (async_detector.py)
run on a private event loop, for scripts and threads.

    from yolo_triton.client import detect
    for result in detect(["bus.jpg", "photos/"], model="yolov11_nano"):
        print(result.source, result.error or [(d.class_name, round(d.score, 2), d.box) for d in result.detections])
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping

from yolo_triton.client.async_detector import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CONCURRENCY,
    DEFAULT_MODEL,
    AsyncDetector,
    Connection,
    ImageResult,
    Source,
)


class Detector:
    """A connection to one ensemble; use as a context manager (or call close()). Thread-safe.
    The arguments are AsyncDetector's."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        url: str | Connection | None = None,
        protocol: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
        *,
        root_certificates: str | os.PathLike | None = None,
        headers: Mapping[str, str] | Iterable[str] | None = None,
    ):
        async_detector = AsyncDetector(
            model, url, protocol, batch_size, concurrency, root_certificates=root_certificates, headers=headers
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="yolo-triton-client", daemon=True)
        self._thread.start()
        self._async = async_detector
        self.model, self.url, self.protocol = model, async_detector.url, async_detector.protocol
        try:
            self._run(self._async.open()).result()
        except BaseException:
            self._stop()
            raise

    @property
    def batch_size(self) -> int:
        return self._async.batch_size

    @property
    def class_names(self) -> tuple[str, ...]:
        """The served model's class names (from its weights)."""
        return self._async.class_names

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._async.close()).result()
            self._stop()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def detect(self, sources: Source | Iterable[Source]) -> list[ImageResult]:
        """One result per image, in the order given."""
        return list(self.stream(sources))

    def stream(self, sources: Source | Iterable[Source]) -> Iterator[ImageResult]:
        """Results in the order given, as they come: a long run holds only the requests in flight."""
        window = deque()
        for batch in self._async.batches(sources):
            if len(window) > self._async.concurrency:  # keeps every slot busy, reads little ahead
                yield from window.popleft().result()
            window.append(self._run(self._async.detect_batch(batch)))
        while window:
            yield from window.popleft().result()


def detect(
    sources: Source | Iterable[Source],
    model: str = DEFAULT_MODEL,
    url: str | Connection | None = None,
    protocol: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    *,
    root_certificates: str | os.PathLike | None = None,
    headers: Mapping[str, str] | Iterable[str] | None = None,
) -> list[ImageResult]:
    """Detections for each image (paths, folders, globs or encoded bytes), in the order given."""
    with Detector(
        model, url, protocol, batch_size, concurrency, root_certificates=root_certificates, headers=headers
    ) as detector:
        return detector.detect(sources)
