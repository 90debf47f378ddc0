"""Clients of the ensembles: `detect()` / `Detector` (blocking), `AsyncDetector` (asyncio), the
`yolo-triton` command (yolo_triton/client/cli.py), the HTTP gateway (yolo_triton/client/gateway.py) and the COCO
evaluator (yolo_triton/client/evaluate.py)."""

from yolo_triton.client.async_detector import (
    AccessDenied,
    AsyncDetector,
    ClientError,
    Detection,
    ImageResult,
    ServerUnavailable,
    UnknownModel,
    expand_sources,
)
from yolo_triton.client.connection import Connection, connect
from yolo_triton.client.detector import Detector, detect

__all__ = [
    "AccessDenied",
    "AsyncDetector",
    "ClientError",
    "Connection",
    "Detection",
    "Detector",
    "ImageResult",
    "ServerUnavailable",
    "UnknownModel",
    "connect",
    "detect",
    "expand_sources",
]
