"""Triton Python-backend model `preprocess` (CPU): encoded images -> letterboxed hand-off tensor.

Input `image` (BYTES, one encoded image per row). Outputs `images` (UINT8 [3, S, S], RGB) and
`letterbox` (FP32 [6]) for the detector. A row that does not decode fails its own request with a
message naming the row; the other requests of the same batch are answered normally.
"""

import json

import cv2
import numpy as np
import triton_python_backend_utils as pb_utils

from yolo_triton.contract import IMAGE_INPUT, LETTERBOX_PARAMS, letterboxed_images
from yolo_triton.preprocessing import ImageError, decode, letterbox_into


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.imgsz = int(config["parameters"]["imgsz"]["string_value"])
        self.images_spec = letterboxed_images(self.imgsz)
        # warm-up: the first request should not pay for OpenCV's first decode and resize
        ok, jpeg = cv2.imencode(".jpg", np.full((480, 640, 3), 128, np.uint8))
        self._preprocess([[jpeg.tobytes()]])

    def _preprocess(self, requests_rows):
        """Letterbox every row of every request into one batch; per-request errors."""
        total = sum(len(rows) for rows in requests_rows)
        batch = np.empty((total, *self.images_spec.dims), self.images_spec.numpy_dtype)
        params = np.zeros((total, *LETTERBOX_PARAMS.dims), LETTERBOX_PARAMS.numpy_dtype)
        results, start = [], 0
        for rows in requests_rows:
            end = start + len(rows)
            try:
                for i, data in enumerate(rows):
                    try:
                        params[start + i] = letterbox_into(batch[start + i], decode(data))
                    except ImageError as e:
                        raise ImageError(f"image {i} of {len(rows)} in the request: {e}") from None
                results.append((batch[start:end], params[start:end]))
            except ImageError as e:
                results.append(e)
            start = end
        return results

    def execute(self, requests):
        rows = [pb_utils.get_input_tensor_by_name(r, IMAGE_INPUT.name).as_numpy().reshape(-1) for r in requests]
        responses = []
        for result in self._preprocess(rows):
            if isinstance(result, Exception):
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(result), pb_utils.TritonError.INVALID_ARG)))
            else:
                images, params = result
                responses.append(pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor(self.images_spec.name, images), pb_utils.Tensor(LETTERBOX_PARAMS.name, params)]))
        return responses
