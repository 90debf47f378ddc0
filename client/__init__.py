"""Clients of the ensembles: `detect()` / `Detector` (blocking), `AsyncDetector` (asyncio), the
`yolo-triton` command (client/cli.py), the HTTP gateway (client/gateway.py) and the COCO
evaluator (client/evaluate.py)."""

from yolo_triton.client.core import (
    AsyncDetector, ClientError, Detection, ImageResult, ServerUnavailable, UnknownModel, expand_sources)
from yolo_triton.client.detect import Detector, detect

__all__ = ["AsyncDetector", "ClientError", "Detection", "Detector", "ImageResult", "ServerUnavailable",
           "UnknownModel", "detect", "expand_sources"]
