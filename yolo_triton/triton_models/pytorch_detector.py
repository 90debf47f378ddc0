"""Triton Python-backend model `<variant>_detector` in PyTorch (yolo_triton/torch_detector.py):
Ultralytics' network from the weights beside this file (`model.pt`), one CUDA graph per batch size
captured and warmed in initialize(), then NMS and the mapping to original pixels for the whole batch
on the GPU, with the meaning of the ONNX detector graph.

- The `images` batch from `preprocess` stays in GPU memory: the config sets
  FORCE_CPU_ONLY_INPUT_TENSORS "no", each request's tensor is viewed by DLPack and copied device to
  device into the graph's input; a tensor from host memory (a client calling the detector directly)
  is copied up. On a host of several GPUs a tensor may come from preprocess on another GPU than this
  instance's (Triton hands an input over where it was made): PyTorch's copy_ across devices copies
  it, after the work queued on this instance's stream and before what follows there (events on both
  devices' streams). The letterbox rows come from host memory.
- One graph replay per execution, for all requests together, padded up to the next batch size of
  the config parameter `batch_sizes`. Config parameters: `precision` (fp16, fp32), `variant` (the
  variant's fields, JSON: thresholds, K, head kind).
- The outputs (about 2.4 KB an image) come back to host memory in one copy per execution and are
  split per request: Triton sends them to the client from host memory anyway.
- An instance of KIND_CPU runs the same on the CPU, eagerly.
"""

import gc
import json
import os
from contextlib import nullcontext

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from yolo_triton.contract import LETTERBOX_PARAMS, Variant, letterboxed_images
from yolo_triton.torch_detector import Detector

IMAGES = letterboxed_images(640).name  # the name, whatever the size


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config["parameters"].items()}
        self.variant = Variant(**json.loads(parameters["variant"]))
        on_gpu = args["model_instance_kind"] == "GPU"
        self.device = torch.device(f"cuda:{args['model_instance_device_id']}" if on_gpu else "cpu")
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
            for size in sizes:  # the post-processing's kernels and the NMS, once per size
                imgsz = self.variant.imgsz
                self.detector(
                    torch.full((size, 3, imgsz, imgsz), 114, dtype=torch.uint8, device=self.device),
                    torch.tensor([[0, 0, 1, 1, imgsz, imgsz]] * size, dtype=torch.float32),
                )
        if on_gpu:
            self.stream.synchronize()
        graphs = f"one CUDA graph per batch size {sorted(self.detector.graphs)}" if self.detector.graphs else "eager"
        # what loading made (PyTorch, Ultralytics, CuPy: millions of objects) stays out of every later
        # garbage collection, whose full scans of it paused executions by milliseconds
        gc.collect()
        gc.freeze()
        pb_utils.Logger.log_info(
            f"{config['name']}: PyTorch {torch.__version__} on {self.device}, {parameters['precision']}, {graphs}"
        )

    def _images(self, tensor) -> torch.Tensor:
        if tensor.is_cpu():
            return torch.from_numpy(tensor.as_numpy())
        return torch.from_dlpack(tensor.to_dlpack())  # GPU memory from preprocess, no copy

    def execute(self, requests):
        images = [self._images(pb_utils.get_input_tensor_by_name(r, IMAGES)) for r in requests]
        letterbox = torch.from_numpy(
            np.concatenate([pb_utils.get_input_tensor_by_name(r, LETTERBOX_PARAMS.name).as_numpy() for r in requests])
        )
        with torch.cuda.stream(self.stream) if self.device.type == "cuda" else nullcontext():
            found = self.detector(images, letterbox)
            k = self.variant.max_detections
            # one copy to host memory for the four outputs (num and classes are exact in FP32)
            packed = torch.cat(
                (found.num_dets.float(), found.det_boxes.flatten(1), found.det_scores, found.det_classes.float()), 1
            ).cpu()
        num, boxes, scores, classes = np.split(packed.numpy(), np.cumsum([1, 4 * k, k]), axis=1)
        names = [s.name for s in self.variant.outputs]  # num_dets, det_boxes, det_scores, det_classes
        outputs = dict(
            zip(
                names,
                (
                    num.astype(np.int32),
                    np.ascontiguousarray(boxes).reshape(-1, k, 4),
                    np.ascontiguousarray(scores),
                    classes.astype(np.int32),
                ),
            )
        )
        responses, start = [], 0
        for image_batch in images:
            end = start + len(image_batch)
            tensors = [pb_utils.Tensor(name, value[start:end]) for name, value in outputs.items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start = end
        return responses
