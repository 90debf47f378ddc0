"""The client's one implementation: typed results, image sources, and `AsyncDetector`, which sends
encoded images to an ensemble (tritonclient's asyncio clients, HTTP or gRPC). The blocking
`Detector` (yolo_triton/client/detector.py) runs this same code on a private event loop.

    async with AsyncDetector("yolov11_nano", protocol="grpc") as detector:
        results = await detector.detect(["bus.jpg", "photos/", open("zidane.jpg", "rb").read()])

Images travel as their encoded bytes (the server decodes them), several per request, with several
requests in flight. An image the server refuses gets the server's message in its own result
(`result.error`); the other images still get their detections. An unreachable server, an
unknown model or a missing or wrong key header raises `ServerUnavailable` / `UnknownModel` /
`AccessDenied` at once. The server's address, TLS and headers: yolo_triton/client/connection.py.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yolo_triton.client.connection import (  # noqa: F401 (DEFAULT_URLS: the defaults' home before connection.py)
    DEFAULT_URLS,
    HEADERS_ENV,
    Connection,
    connect,
    tritonclient_module,
)
from yolo_triton.contract import (
    CLASS_NAMES_PARAMETER,
    IMAGE_INPUT,
    detection_outputs,
    image_error_reason,
    is_ensemble,
)

DEFAULT_MODEL = "yolov11_nano"
DEFAULT_BATCH_SIZE = 8  # images per request
DEFAULT_CONCURRENCY = 4  # requests in flight
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # what a folder contributes
QUEUE_FULL_RETRIES = 5  # a request refused by a full server queue is sent again this often, backing off

Source = str | os.PathLike | bytes


class ClientError(Exception):
    """No image can be served (as opposed to one image being refused)."""


class ServerUnavailable(ClientError):
    pass


class UnknownModel(ClientError):
    pass


class AccessDenied(ClientError):
    """The server wants a header (Triton's restricted APIs) that the request lacks or got wrong."""


@dataclass(frozen=True)
class Detection:
    class_id: int
    class_name: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the original image's pixels

    def to_dict(self) -> dict:
        return {
            "class_id": self.class_id,
            "class_name": self.class_name,
            "score": round(self.score, 5),
            "box": [round(x, 2) for x in self.box],
        }


@dataclass(frozen=True)
class ImageResult:
    """One image's outcome: its detections, or the reason it has none (`error`)."""

    source: str  # the path it came from, or "<bytes N>" for the Nth source given, a bytes object
    detections: tuple[Detection, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return {
            "image": self.source,
            "detections": [d.to_dict() for d in self.detections],
            **({"error": self.error} if self.error else {}),
        }


@dataclass(frozen=True)
class _Image:
    source: str
    content: bytes | Path

    def read(self) -> bytes | ImageResult:
        """Its bytes, or the result of an image that cannot be read."""
        try:
            return self.content.read_bytes() if isinstance(self.content, Path) else self.content
        except OSError as e:
            return ImageResult(self.source, error=f"cannot read: {e.strerror or e}")


def expand_sources(sources: Source | Iterable[Source]) -> list[_Image]:
    """Files, folders (their images, sorted), glob patterns and bytes objects, in the order given."""
    if isinstance(sources, (str, bytes, os.PathLike)):
        sources = [sources]
    images = []
    for i, source in enumerate(sources):
        if isinstance(source, _Image):  # expanded already
            images.append(source)
            continue
        if isinstance(source, (bytes, bytearray, memoryview)):
            images.append(_Image(f"<bytes {i}>", bytes(source)))
            continue
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.exists():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(str(source), recursive=True) if Path(p).is_file())
        if not found:
            raise FileNotFoundError(f"no image file, folder or glob match: {source}")
        images.extend(_Image(str(p), p) for p in found)
    return images


def image_input(images: list[bytes], protocol: str = "grpc"):
    """The ensemble's `image` input for a batch of encoded images (one per row)."""
    tensor = tritonclient_module(protocol).InferInput(
        IMAGE_INPUT.name, [len(images), *IMAGE_INPUT.dims], IMAGE_INPUT.datatype
    )
    tensor.set_data_from_numpy(np.array(images, dtype=object).reshape(len(images), *IMAGE_INPUT.dims))
    return tensor


def class_names(config: dict) -> tuple[str, ...]:
    """The class names an ensemble publishes in its config (the weights' own names), from the model
    config JSON of either protocol; () if it publishes none."""
    config = config.get("config", config)  # gRPC wraps it
    value = config.get("parameters", {}).get(CLASS_NAMES_PARAMETER, {}).get("string_value")
    return tuple(json.loads(value)) if value else ()


def parse_result(result, names: tuple[str, ...] = ()) -> list[tuple[Detection, ...]]:
    """Per image of a response: its detections (the rows before num_dets; the rest is padding),
    each class named by `names` (its id as text past their end)."""
    num, boxes, scores, classes = (result.as_numpy(spec.name) for spec in detection_outputs(0))
    return [
        tuple(
            Detection(int(c), names[c] if 0 <= c < len(names) else str(c), float(s), tuple(float(x) for x in b))
            for b, s, c in zip(boxes[i, :n], scores[i, :n], classes[i, :n].tolist())
        )
        for i, n in enumerate(num.reshape(-1))
    ]


def access_denied(error: Exception, url: str) -> AccessDenied | None:
    """AccessDenied when Triton refused the request for a missing or wrong header."""
    message = error.message() if callable(getattr(error, "message", None)) else str(error)  # tritonclient's
    if "is restricted, expecting header" not in str(message):  # both protocols' words, Triton 2.51
        return None
    return AccessDenied(
        f"the Triton server at {url} refused the request: {message} (missing or wrong: send it with "
        f"headers=, --header NAME=VALUE or {HEADERS_ENV})"
    )


def refusal(error: Exception, model: str, url: str) -> str:
    """The message of a request the server refused for its content. Raises for everything else
    (server down, unknown model, no access): those fail every image alike, so the caller must hear
    of them."""
    status = str(error.status()) if hasattr(error, "status") else ""
    message = error.message() if hasattr(error, "message") else str(error)
    denied = access_denied(error, url)
    if denied:
        raise denied from error
    if "unknown model" in message:
        raise UnknownModel(f"model {model!r} is not served at {url}") from error
    if status in ("400", "StatusCode.INVALID_ARGUMENT"):
        return image_error_reason(message) or message
    raise ServerUnavailable(f"request to {url} failed: {message or error}") from error


class AsyncDetector:
    """A connection to one ensemble; `async with` it (or `await open()`) before detecting.

    `url`: host:port, a URL whose scheme says the protocol and TLS (grpcs://, https://), or a
    Connection; `protocol`: grpc or http (default: the URL's, else grpc); `root_certificates`: a PEM
    file that verifies the server's TLS certificate; `headers`: sent with every request (a mapping
    or NAME=VALUE strings), over those of YOLO_TRITON_HEADERS (yolo_triton/client/connection.py)."""

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
        self.connection = connect(url, protocol, root_certificates, headers)
        self.model, self.protocol, self.url = model, self.connection.protocol, self.connection.url
        self.batch_size, self.concurrency = max(1, batch_size), max(1, concurrency)
        self._module = tritonclient_module(self.protocol, aio=True)
        self._client = None
        self._slots: asyncio.Semaphore | None = None
        self.class_names: tuple[str, ...] = ()  # the served model's, read by open()

    async def open(self) -> AsyncDetector:
        """Connects, checks the model is served, and caps the batch size at the model's maximum."""
        self._client = self.connection.client()
        self._slots = asyncio.Semaphore(self.concurrency)
        try:
            try:
                live = await self._client.is_server_live()
            except Exception as e:  # each protocol has its own connection errors
                raise access_denied(e, self.url) or ServerUnavailable(
                    f"no Triton server at {self.url} ({self.protocol}): {e}{self._tls_hint(e)}"
                ) from e
            if not live:
                raise ServerUnavailable(f"the Triton server at {self.url} is not live")
            try:
                if not await self._client.is_model_ready(self.model):
                    raise UnknownModel(f"model {self.model!r} is not served at {self.url}{await self._served()}")
                config = await self._json(self._client.get_model_config, self.model)
            except self._module.InferenceServerException as e:
                denied = access_denied(e, self.url)
                if denied:
                    raise denied from e
                raise
        except BaseException:
            await self.close()
            raise
        self.batch_size = min(self.batch_size, max(1, int(config.get("config", config)["max_batch_size"])))
        self.class_names = class_names(config)
        return self

    async def _served(self) -> str:
        """'; served: ...' (the ready ensembles), or nothing where the repository API is restricted."""
        try:
            index = await self._json(self._client.get_model_repository_index)
        except self._module.InferenceServerException as e:
            if access_denied(e, self.url):  # the Helm chart keeps it for its admin key
                return ""
            raise
        models = index.get("models", []) if isinstance(index, dict) else index  # gRPC / HTTP
        served = sorted(m["name"] for m in models if m.get("state") == "READY" and is_ensemble(m["name"]))
        return f"; served: {', '.join(served)}"

    def _tls_hint(self, error: Exception) -> str:
        # a plaintext gRPC channel to a TLS port: the server closes it at the first bytes
        if self.protocol == "grpc" and not self.connection.tls and "Socket closed" in str(error):
            return f"; a server that uses TLS is reached as grpcs://{self.connection.address}"
        return ""

    async def _json(self, method, *args):
        return await (method(*args, as_json=True) if self.protocol == "grpc" else method(*args))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def __aenter__(self) -> AsyncDetector:
        return await self.open()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def detect(self, sources: Source | Iterable[Source]) -> list[ImageResult]:
        """One result per image, in the order given."""
        done = await asyncio.gather(*map(self.detect_batch, self.batches(sources)))
        return [result for batch in done for result in batch]

    def batches(self, sources: Source | Iterable[Source]) -> list[list[_Image]]:
        """The images of the sources, a request's worth (batch_size) at a time."""
        images = expand_sources(sources)
        return [images[i : i + self.batch_size] for i in range(0, len(images), self.batch_size)]

    async def detect_batch(self, images: list[_Image]) -> list[ImageResult]:
        """One request's worth of images (waits for one of the `concurrency` slots)."""
        async with self._slots:
            read = [image.read() for image in images]
            sent = [(image, data) for image, data in zip(images, read) if isinstance(data, bytes)]
            answers = iter(await self._send(*zip(*sent)) if sent else [])
            return [data if isinstance(data, ImageResult) else next(answers) for data in read]

    async def _send(self, images: tuple[_Image, ...], payloads: tuple[bytes, ...]) -> list[ImageResult]:
        """Results of one request. A refused request is split, so each image gets its own answer; one
        refused because the server's queue is full is sent again after a back-off."""
        inputs = [image_input(list(payloads), self.protocol)]
        for attempt in range(QUEUE_FULL_RETRIES + 1):
            try:
                answered = parse_result(await self._client.infer(self.model, inputs), self.class_names)
                return [ImageResult(image.source, found) for image, found in zip(images, answered)]
            except self._module.InferenceServerException as e:
                if "Exceeds maximum queue size" not in str(e) or attempt == QUEUE_FULL_RETRIES:
                    message = refusal(e, self.model, self.url)
                    break
                await asyncio.sleep(0.05 * 2**attempt)
            except OSError as e:  # HTTP: the connection itself failed
                raise ServerUnavailable(f"request to {self.url} failed: {e}") from e
        if len(images) == 1:
            return [ImageResult(images[0].source, error=message)]
        return [r for pair in zip(images, payloads) for r in await self._send(*zip(pair))]
