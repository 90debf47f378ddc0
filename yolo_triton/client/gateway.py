"""An upload-a-file HTTP flow, for the apps that want one: `POST /predict/{model}` with an uploaded
image file, JSON detections back. A thin FastAPI app in front of Triton: it forwards the uploaded
bytes untouched to the ensemble (gRPC by default), so decoding, NMS and box mapping stay on the
server; OpenAPI schema at /openapi.json, docs at /docs.

    yolo-triton gateway --port 8080 --url 127.0.0.1:8001
    curl -F file=@bus.jpg http://127.0.0.1:8080/predict/yolov11_nano

Errors: 400 with the server's message for an image it refuses, 404 for a model it does not
serve, 413 for an upload over the server's size limit, 503 when Triton cannot be reached or
refuses the gateway (TLS or a header it wants: the gateway's own --url, --header).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI, File, HTTPException, UploadFile
from pydantic import BaseModel, Field

from yolo_triton.client.async_detector import AccessDenied, AsyncDetector, ServerUnavailable, UnknownModel
from yolo_triton.client.connection import Connection, connect
from yolo_triton.contract import MAX_IMAGE_BYTES

GATEWAY_CONCURRENCY = 64  # requests in flight to Triton per model; its dynamic batcher groups them


class DetectionOut(BaseModel):
    class_id: int
    class_name: str
    score: float
    box: list[float] = Field(description="x1, y1, x2, y2 in the original image's pixels", min_length=4, max_length=4)


class Prediction(BaseModel):
    model: str
    image: str | None = Field(description="the uploaded file's name")
    detections: list[DetectionOut]


class ErrorOut(BaseModel):
    detail: str


def create_app(
    url: str | Connection | None = None,
    protocol: str | None = None,
    root_certificates: str | os.PathLike | None = None,
    headers: Mapping[str, str] | Iterable[str] | None = None,
) -> FastAPI:
    """The app, reaching Triton as AsyncDetector does with these arguments."""
    connection = connect(url, protocol, root_certificates, headers)
    detectors: dict[str, AsyncDetector] = {}
    opening = asyncio.Lock()

    async def detector_for(model: str) -> AsyncDetector:
        async with opening:  # one connection per model, opened on its first request
            if model not in detectors:
                detectors[model] = await AsyncDetector(
                    model, connection, batch_size=1, concurrency=GATEWAY_CONCURRENCY
                ).open()
            return detectors[model]

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for detector in detectors.values():
            await detector.close()

    app = FastAPI(
        title="YOLO on Triton: HTTP gateway",
        lifespan=lifespan,
        description="Uploaded image bytes go untouched to a Triton ensemble; detections in the "
        "original image's pixels come back.",
    )
    errors = {code: {"model": ErrorOut} for code in (400, 404, 413, 503)}

    @app.post("/predict/{model}", response_model=Prediction, responses=errors)
    async def predict(model: str, file: UploadFile = File(description="an encoded image: JPEG, PNG, WebP, BMP, TIFF")):
        data = await file.read(MAX_IMAGE_BYTES + 1)
        if len(data) > MAX_IMAGE_BYTES:
            raise HTTPException(413, f"image is over the limit of {MAX_IMAGE_BYTES} bytes")
        try:
            result = (await (await detector_for(model)).detect([data]))[0]
        except UnknownModel as e:
            raise HTTPException(404, str(e)) from e
        except (ServerUnavailable, AccessDenied) as e:  # AccessDenied: the gateway's own header is missing or wrong
            raise HTTPException(503, str(e)) from e
        if not result.ok:
            raise HTTPException(400, result.error)
        return Prediction(model=model, image=file.filename, detections=[d.to_dict() for d in result.detections])

    @app.get("/health", responses={503: {"model": ErrorOut}})
    async def health() -> dict:
        """Ready when Triton is ready."""
        client = connection.client()
        try:
            ready = await client.is_server_ready()
        except Exception as e:
            raise HTTPException(503, f"no Triton server at {connection.url}: {e}") from e
        finally:
            await client.close()
        if not ready:
            raise HTTPException(503, f"the Triton server at {connection.url} is not ready")
        return {"status": "ready", "triton": connection.url}

    return app
