"""Triton Python-backend model `preprocess`: encoded images -> letterboxed hand-off tensor.

Input `image` (BYTES, one encoded image per row). Outputs `images` (UINT8 [3, S, S], RGB) and
`letterbox` (FP32 [6]) for the detector. On the GPU (nvImageCodec + CuPy, gpu_preprocessing.py)
`images` stays in GPU memory and goes to the detector by DLPack; on the CPU, OpenCV
(preprocessing.py). Config parameters: `imgsz`; `rect` ("1": each request letterboxed to the
smallest multiple of the stride, so its `images` have its own height and width); `device`: "auto"
(the GPU when CuPy, nvImageCodec and a GPU are there), "gpu" or "cpu"; `decoders` (GPU): nvImageCodec's
backends to use, in order (default HW_GPU_ONLY,GPU_ONLY,HYBRID_CPU_GPU: the hardware JPEG decoder
where the GPU has one). A row that does not decode
fails its own request with a message naming
the row; the other requests of the same batch are answered normally.
"""

import gc
import json
import warnings

import cv2
import numpy as np
import triton_python_backend_utils as pb_utils

from yolo_triton.contract import IMAGE_INPUT, LETTERBOX_PARAMS, image_error, letterboxed_images
from yolo_triton.preprocessing import CpuPreprocessor, ImageError


def _gpu_available() -> bool:
    try:
        import cupy
        from nvidia import nvimgcodec  # noqa: F401

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = config["parameters"]
        imgsz = int(parameters["imgsz"]["string_value"])
        self.rect = parameters.get("rect", {}).get("string_value", "0") == "1"
        self.images_spec = letterboxed_images(imgsz, self.rect)
        device = parameters.get("device", {}).get("string_value", "auto")
        if device not in ("auto", "gpu", "cpu"):
            raise ValueError(f"parameter device must be auto, gpu or cpu, not {device!r}")
        self.on_gpu = device == "gpu" or (device == "auto" and _gpu_available())
        if self.on_gpu:
            import cupy

            from yolo_triton.gpu_preprocessing import GpuPreprocessor

            device_id = (
                int(args.get("model_instance_device_id", 0) or 0) if args.get("model_instance_kind") == "GPU" else 0
            )
            decoders = parameters.get("decoders", {}).get("string_value")
            self.impl = GpuPreprocessor(imgsz, device_id, tuple(decoders.split(",")) if decoders else None, self.rect)
            with self.impl.device:
                self.stream = cupy.cuda.Stream(non_blocking=True)
            # CuPy 13 deprecates toDlpack(), the bare capsule that execute() hands over without a
            # stream synchronisation per response: no warning for it in the server's log
            warnings.filterwarnings("ignore", "This function is deprecated")
        else:
            self.impl = CpuPreprocessor(imgsz, self.rect)
        # warm-up: kernel compile, decoder start, first OpenCV decode and resize
        ok, jpeg = cv2.imencode(".jpg", np.full((480, 640, 3), 128, np.uint8))
        self._preprocess([[jpeg.tobytes()]])
        # what loading made (PyTorch, Ultralytics, CuPy: millions of objects) stays out of every later
        # garbage collection, whose full scans of it paused executions by milliseconds
        gc.collect()
        gc.freeze()
        where = f"GPU (nvImageCodec {', '.join(self.impl.backends)} + CuPy)" if self.on_gpu else "CPU (OpenCV)"
        pb_utils.Logger.log_info(f"preprocess: {where}")

    def _preprocess(self, requests_rows):
        """One decode call for all rows of all requests, one letterbox call for all (one per request
        with rect); per request either (images, params) or the ImageError naming its bad row."""
        flat = [data for rows in requests_rows for data in rows]
        if self.on_gpu:
            with self.impl.device, self.stream:
                decoded = self.impl.decode(flat, self.stream)
                results = self._split(
                    requests_rows, decoded, lambda good: self.impl.letterbox(good, self.stream), self.rect
                )
                self.stream.synchronize()  # the decoded images may be freed once the kernel has read them
            return results
        return self._split(requests_rows, self.impl.decode(flat), self.impl.letterbox, self.rect)

    @staticmethod
    def _split(requests_rows, decoded, letterbox, per_request: bool):
        """per_request (rect): each request letterboxed alone, to its own shape; else all at once."""
        outcomes, good, start = [], [], 0
        for rows in requests_rows:
            mine = decoded[start : start + len(rows)]
            start += len(rows)
            bad = next(((i, r) for i, r in enumerate(mine) if isinstance(r, ImageError)), None)
            if bad:
                outcomes.append(ImageError(image_error(bad[0], len(rows), bad[1])))
            else:
                outcomes.append((len(good), len(good) + len(mine)))
                good.extend(mine)
        if per_request:
            return [o if isinstance(o, ImageError) else letterbox(good[o[0] : o[1]]) for o in outcomes]
        batch, params = letterbox(good)
        return [o if isinstance(o, ImageError) else (batch[o[0] : o[1]], params[o[0] : o[1]]) for o in outcomes]

    def execute(self, requests):
        rows = [pb_utils.get_input_tensor_by_name(r, IMAGE_INPUT.name).as_numpy().reshape(-1) for r in requests]
        responses = []
        for result in self._preprocess(rows):
            if isinstance(result, ImageError):
                error = pb_utils.TritonError(str(result), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            images, params = result
            # a bare DLPack capsule: no stream synchronisation per response (_preprocess has synchronised once)
            images = (
                pb_utils.Tensor.from_dlpack(self.images_spec.name, images.toDlpack())
                if self.on_gpu
                else pb_utils.Tensor(self.images_spec.name, images)
            )
            responses.append(
                pb_utils.InferenceResponse(output_tensors=[images, pb_utils.Tensor(LETTERBOX_PARAMS.name, params)])
            )
        return responses
