"""Triton Python-backend model `<variant>_detector` in PyTorch (yolo_triton/torch_detector.py), target
pytorch-gpu: the encoded `image` rows in, the detections out. It decodes and letterboxes the images
itself (yolo_triton/batch_preprocessing.py, as the preprocess model of the other targets does; config
parameter `preprocess_device`), then runs Ultralytics' network from the weights beside this file
(`model.pt`) as one CUDA graph per batch size, captured and warmed in initialize(), then NMS and the
mapping to original pixels for the whole batch on the GPU, with the meaning of the ONNX detector graph.

- The images pass from CuPy's GPU memory to PyTorch by DLPack, without a copy: no tensor crosses
  between models (Triton's Python backend hands a GPU tensor from one model to the next at about 2 ms
  per response and 0.5 ms per request on an H100, which bounded the ensemble of a separate preprocess
  model at 1,782 images/s; benchmarks/RESULTS.md).
- A row that does not decode fails its own request; the other requests of the execution are answered.
- One graph replay per execution (per image shape: rect requests of several shapes run eagerly one
  shape after another), for all requests together, padded up to the next batch size of the config
  parameter `batch_sizes`; the graph also holds the post-processing (torch_detector.postprocess_fixed).
  Config parameters: `precision` (fp16, fp32), `variant` (the variant's
  fields, JSON: thresholds, K, head kind).
- The outputs (about 2.4 KB an image) come back to host memory in one copy per call of the network
  and are split per request: Triton sends them to the client from host memory anyway.
- An instance of KIND_CPU (with `preprocess_device` cpu) runs the same on the CPU: OpenCV, the network
  eagerly.
"""

import gc
import json
import os
from contextlib import nullcontext

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from yolo_triton.batch_preprocessing import BatchPreprocessor
from yolo_triton.contract import IMAGE_INPUT, Variant
from yolo_triton.preprocessing import ImageError
from yolo_triton.torch_detector import Detector


def _tensor(images) -> torch.Tensor:
    """The preprocessing's images without a copy: NumPy's, or CuPy's GPU memory by DLPack (the
    preprocessing has finished with it)."""
    return torch.from_numpy(images) if isinstance(images, np.ndarray) else torch.from_dlpack(images)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config["parameters"].items()}
        self.variant = Variant(**json.loads(parameters["variant"]))
        on_gpu = args["model_instance_kind"] == "GPU"
        self.device = torch.device(f"cuda:{args['model_instance_device_id']}" if on_gpu else "cpu")
        self.preprocess = BatchPreprocessor(
            self.variant.imgsz,
            self.variant.rect,
            parameters["preprocess_device"],
            parameters.get("decoders"),
            self.device.index or 0,
            config["max_batch_size"],
        )
        if on_gpu:
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True  # fixed shapes: cuDNN's fastest algorithms, chosen once
            # no TF32: FP32 variants keep FP32 arithmetic (as ONNX Runtime's use_tf32 0)
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
            self.stream = torch.cuda.Stream(self.device)
        sizes = [int(s) for s in parameters["batch_sizes"].split(",")]
        weights = os.path.join(args["model_repository"], args["model_version"], "model.pt")
        with torch.cuda.stream(self.stream) if on_gpu else nullcontext():
            self.detector = Detector(weights, self.variant, self.device, parameters["precision"], sizes)
            # the post-processing's kernels and the NMS, once per graph size (on the CPU, where nothing
            # is made per size, once: a warm-up at the largest batch would cost seconds and gigabytes)
            for size in sizes if on_gpu else sizes[:1]:
                imgsz = self.variant.imgsz
                self.detector(
                    torch.full((size, 3, imgsz, imgsz), 114, dtype=torch.uint8, device=self.device),
                    torch.tensor([[0, 0, 1, 1, imgsz, imgsz]] * size, dtype=torch.float32),
                )
        if on_gpu:
            self.stream.synchronize()
        graphs = f"one CUDA graph per batch size {sorted(self.detector.graphs)}" if self.detector.graphs else "eager"
        graphs += f", decoding and letterboxing on the {self.preprocess.where}"
        # what loading made (PyTorch, Ultralytics, CuPy: millions of objects) stays out of every later
        # garbage collection, whose full scans of it paused executions by milliseconds
        gc.collect()
        gc.freeze()
        pb_utils.Logger.log_info(
            f"{config['name']}: PyTorch {torch.__version__} on {self.device}, {parameters['precision']}, {graphs}"
        )

    def _inputs(self, requests) -> list:
        """Per request (its images, its letterbox rows), or the ImageError of its first bad row."""
        rows = [pb_utils.get_input_tensor_by_name(r, IMAGE_INPUT.name).as_numpy().reshape(-1) for r in requests]
        return [o if isinstance(o, ImageError) else (_tensor(o[0]), o[1]) for o in self.preprocess(rows)]

    def _detect(self, images: list[torch.Tensor], letterbox: np.ndarray) -> list[np.ndarray]:
        """The four outputs of these requests' images, in host memory."""
        with torch.cuda.stream(self.stream) if self.device.type == "cuda" else nullcontext():
            return self.detector(images, torch.from_numpy(letterbox))

    def execute(self, requests):
        inputs = self._inputs(requests)
        by_shape: dict[tuple, list[int]] = {}  # one network call per image shape (rect), in request order
        for i, given in enumerate(inputs):
            if not isinstance(given, ImageError):
                by_shape.setdefault(tuple(given[0].shape[1:]), []).append(i)
        outputs = {}
        for members in by_shape.values():
            found = self._detect([inputs[i][0] for i in members], np.concatenate([inputs[i][1] for i in members]))
            start = 0
            for i in members:
                end = start + len(inputs[i][0])
                outputs[i] = [value[start:end] for value in found]
                start = end
        names = [s.name for s in self.variant.outputs]  # num_dets, det_boxes, det_scores, det_classes
        responses = []
        for i, given in enumerate(inputs):
            if isinstance(given, ImageError):
                error = pb_utils.TritonError(str(given), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
            else:
                tensors = [pb_utils.Tensor(name, value) for name, value in zip(names, outputs[i])]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
