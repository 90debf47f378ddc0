"""Triton Python-backend model `preprocess`: encoded images -> letterboxed hand-off tensor.

Input `image` (BYTES, one encoded image per row). Outputs `images` (UINT8 [3, S, S], RGB) and
`letterbox` (FP32 [6]) for the detector. On the GPU (nvImageCodec + CuPy, gpu_preprocessing.py)
`images` stays in GPU memory and goes to the detector by DLPack; on the CPU, OpenCV
(preprocessing.py); the batch's work is yolo_triton/batch_preprocessing.py. Config parameters:
`imgsz`; `rect` ("1": each request letterboxed to the smallest multiple of the stride, so its
`images` have its own height and width); `device`: "auto" (the GPU when CuPy, nvImageCodec and a
GPU are there), "gpu" or "cpu"; `decoders` (GPU): nvImageCodec's backends to use, in order (default
HW_GPU_ONLY,GPU_ONLY,HYBRID_CPU_GPU: the hardware JPEG decoder where the GPU has one). A row that
does not decode fails its own request with a message naming the row; the other requests of the
same batch are answered normally.
"""

import gc
import json

import triton_python_backend_utils as pb_utils

from yolo_triton.batch_preprocessing import BatchPreprocessor
from yolo_triton.contract import IMAGE_INPUT, LETTERBOX_PARAMS, letterboxed_images
from yolo_triton.preprocessing import ImageError


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config["parameters"].items()}
        rect = parameters.get("rect", "0") == "1"
        self.images_spec = letterboxed_images(int(parameters["imgsz"]), rect)
        on_gpu_instance = args.get("model_instance_kind") == "GPU"
        self.preprocess = BatchPreprocessor(
            int(parameters["imgsz"]),
            rect,
            parameters.get("device", "auto"),
            parameters.get("decoders"),
            int(args.get("model_instance_device_id", 0) or 0) if on_gpu_instance else 0,
            config["max_batch_size"],
        )
        # what loading made (PyTorch, Ultralytics, CuPy: millions of objects) stays out of every later
        # garbage collection, whose full scans of it paused executions by milliseconds
        gc.collect()
        gc.freeze()
        pb_utils.Logger.log_info(f"preprocess: {self.preprocess.where}")

    def execute(self, requests):
        rows = [pb_utils.get_input_tensor_by_name(r, IMAGE_INPUT.name).as_numpy().reshape(-1) for r in requests]
        responses = []
        for result in self.preprocess(rows):
            if isinstance(result, ImageError):
                error = pb_utils.TritonError(str(result), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            images, params = result
            # a bare DLPack capsule: no stream synchronisation per response (the batch's work is done)
            images = (
                pb_utils.Tensor.from_dlpack(self.images_spec.name, images.toDlpack())
                if self.preprocess.on_gpu
                else pb_utils.Tensor(self.images_spec.name, images)
            )
            responses.append(
                pb_utils.InferenceResponse(output_tensors=[images, pb_utils.Tensor(LETTERBOX_PARAMS.name, params)])
            )
        return responses
