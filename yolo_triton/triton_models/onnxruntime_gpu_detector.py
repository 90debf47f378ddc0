"""Triton Python-backend model `<variant>_detector` on the GPU: ONNX Runtime GPU on the detector
graph (NMS and box mapping inside, yolo_triton/export/create_onnx.py), TensorRT's execution provider first
where TensorRT's libraries are present, else CUDA's.

- The `images` batch from `preprocess` stays in GPU memory: the config sets
  FORCE_CPU_ONLY_INPUT_TENSORS "no", each request's tensor is viewed by DLPack (CuPy) and copied
  device to device into a buffer bound to the session (IO binding; a peer copy where preprocess
  ran on another GPU of the host, as Triton may route an ensemble's steps). No host copy of the images;
  an `images` tensor that does come from host memory (a client calling the detector directly) is
  copied up once.
- One ONNX Runtime call per execution, for all requests together. An ONNX Runtime CUDA session
  rebuilds its cuDNN plans (about 3 s for yolo11n on an H100) whenever its input shape differs
  from the previous run, so there is one session per batch size of the config parameter
  `batch_sizes`, each warmed in initialize(), and an execution is padded up to the next size.
- Rect variants (images of any height and width, one shape per execution: Triton batches only
  requests of one shape): one session per batch size and shape, made at the first execution of
  that shape (the first request of a new shape waits for the plans) and kept, the least recently
  used dropped past MAX_SESSIONS. Right for a stream of one size; a mix of many shapes pays often.
- The outputs (about 2.4 KB an image) come back to host memory in one copy per execution, bound
  to buffers of the session, and are split per request: Triton sends them to the client from host
  memory anyway (rather than four GPU tensors per request through Triton's CUDA memory pool).
"""

import collections
import ctypes
import json
import os

import cupy as cp
import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from yolo_triton.contract import LETTERBOX_PARAMS, PADDING_VALUE, letterboxed_images, numpy_dtype

IMAGES = letterboxed_images(640).name  # the name, whatever the size
MAX_SESSIONS = 32  # rect: sessions kept, one per batch size and input shape


def _tensorrt_present() -> bool:
    """ONNX Runtime lists TensorRT's provider whenever it was built with it; it runs only where
    TensorRT's own library loads."""
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        return False
    try:
        ctypes.CDLL("libnvinfer.so.10")
        return True
    except OSError:
        return False


class _Run:
    """One session for one batch size, its inputs in GPU memory and its outputs in host memory,
    bound once: each execution only fills the inputs and calls run_with_iobinding."""

    def __init__(self, session, size: int, inputs: list[dict], outputs: list[dict], device_id: int, shape=None):
        """shape: (height, width) of the images of a rect variant (its dims are -1)."""
        self.session, self.size = session, size
        self.binding = session.io_binding()
        self.inputs = {}
        for spec in inputs:
            dims = (*spec["dims"][:-2], *shape) if spec["name"] == IMAGES and shape else spec["dims"]
            buffer = cp.zeros((size, *dims), numpy_dtype(spec["data_type"]))
            self.binding.bind_input(spec["name"], "cuda", device_id, buffer.dtype, buffer.shape, buffer.data.ptr)
            self.inputs[spec["name"]] = buffer
        self.outputs = {}
        for spec in outputs:
            array = np.zeros((size, *spec["dims"]), numpy_dtype(spec["data_type"]))
            self.binding.bind_output(spec["name"], "cpu", 0, array.dtype, array.shape, array.ctypes.data)
            self.outputs[spec["name"]] = array


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config["parameters"].items()}
        sizes = sorted(int(s) for s in parameters["batch_sizes"].split(","))
        if sizes[-1] < config["max_batch_size"]:
            raise ValueError(f"batch_sizes {sizes} must reach max_batch_size {config['max_batch_size']}")
        self.sizes, self.config = sizes, config
        self.rect = any(-1 in i["dims"] for i in config["input"])
        self.device_id = int(args["model_instance_device_id"])
        self.device = cp.cuda.Device(self.device_id)
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.output_names = [o["name"] for o in config["output"]]
        with self.device:
            self.stream = cp.cuda.Stream(non_blocking=True)
            # ONNX Runtime works on this stream, so the input copies made on it come first
            cuda = {
                "device_id": self.device_id,
                "user_compute_stream": str(self.stream.ptr),
                "use_tf32": "0",  # TF32 convolutions moved detections against the CPU graph
                "arena_extend_strategy": "kSameAsRequested",
                # NHWC convolutions (tensor cores without layout transposes): config parameter
                "prefer_nhwc": parameters.get("prefer_nhwc", "0"),
            }
            providers = [("CUDAExecutionProvider", cuda)]
            if _tensorrt_present():
                cache = os.path.join(args["model_repository"], "trt_cache")
                os.makedirs(cache, exist_ok=True)
                providers.insert(
                    0,
                    (
                        "TensorrtExecutionProvider",
                        {
                            "device_id": self.device_id,
                            "user_compute_stream": str(self.stream.ptr),
                            "trt_engine_cache_enable": "True",
                            "trt_engine_cache_path": cache,
                        },
                    ),
                )
            options = ort.SessionOptions()
            options.log_severity_level = 3  # no per-node placement warnings in the server log
            self.new_session = lambda: ort.InferenceSession(path, options, providers=providers)
            self.runs = collections.OrderedDict()  # (batch size, height, width) -> _Run; (size, 0, 0) when not rect
            with self.stream:  # the buffers' zeroing and warm-up fill ordered before ONNX Runtime's run on it
                for size in [] if self.rect else sizes:
                    self.runs[size, 0, 0] = self._new_run(size)
        pb_utils.Logger.log_info(
            f"{config['name']}: ONNX Runtime {ort.__version__} {providers[0][0]} on GPU {self.device_id}, "
            f"one session per batch size {sizes}{' and input shape, made when first used' if self.rect else ''}"
        )

    def _new_run(self, size: int, shape=None) -> _Run:
        run = _Run(self.new_session(), size, self.config["input"], self.config["output"], self.device_id, shape)
        self._warm(run)
        return run

    def _run_for(self, count: int, shape) -> _Run:
        """The run of the smallest batch size that holds `count` images (of this shape, rect)."""
        size = next(s for s in self.sizes if s >= count)
        key = (size, *shape) if self.rect else (size, 0, 0)
        if key not in self.runs:
            if len(self.runs) >= MAX_SESSIONS:
                self.runs.popitem(last=False)
            self.runs[key] = self._new_run(size, shape)
        self.runs.move_to_end(key)
        return self.runs[key]

    def _warm(self, run: _Run):
        """First run of a session (cuDNN plans, TensorRT engine), in initialize(): grey images
        (the detector's UINT8 or the bare network's FP32) that fill the letterbox."""
        for buffer in run.inputs.values():
            buffer.fill(PADDING_VALUE if buffer.dtype == cp.uint8 else PADDING_VALUE / 255)
        if LETTERBOX_PARAMS.name in run.inputs:  # no padding, scale 1, an image of the input's size
            height, width = run.inputs[IMAGES].shape[-2:]
            run.inputs[LETTERBOX_PARAMS.name][:] = cp.asarray([0, 0, 1, 1, width, height], cp.float32)
        self._run(run)

    def _run(self, run: _Run):
        run.session.run_with_iobinding(run.binding)
        self.stream.synchronize()

    def _copy_in(self, target_ptr: int, source: cp.ndarray, nbytes: int):
        """A GPU input into a bound buffer, on this instance's stream. Triton hands an input over on the
        GPU it was made on, which on a host of several GPUs may be another than this instance's (an
        ensemble's preprocess output on GPU 0, this detector on GPU 1): that one is a peer copy, which
        names both devices (and needs no peer access enabled)."""
        if source.data.device_id == self.device_id:
            cp.cuda.runtime.memcpyAsync(
                target_ptr, source.data.ptr, nbytes, cp.cuda.runtime.memcpyDeviceToDevice, self.stream.ptr
            )
        else:
            cp.cuda.runtime.memcpyPeerAsync(
                target_ptr, self.device_id, source.data.ptr, source.data.device_id, nbytes, self.stream.ptr
            )

    def execute(self, requests):
        names = [i["name"] for i in self.config["input"]]
        tensors = [[pb_utils.get_input_tensor_by_name(r, name) for name in names] for r in requests]
        counts = [t[0].shape()[0] for t in tensors]
        images = tensors[0][names.index(IMAGES)] if IMAGES in names else None
        with self.device, self.stream:  # a new run's buffers are zeroed on the stream the copies below use
            run = self._run_for(sum(counts), tuple(images.shape()[-2:]) if self.rect else None)
        with self.device, self.stream:
            for i, name in enumerate(names):
                target = run.inputs[name]
                on_host = [t[i].as_numpy() for t in tensors if t[i].is_cpu()]
                if len(on_host) == len(tensors):  # small inputs (letterbox) come from host memory: one copy up
                    target[: sum(counts)].set(np.concatenate(on_host), self.stream)
                    continue
                start, row_bytes = 0, target[0].nbytes
                for request_tensors, count in zip(tensors, counts):
                    tensor = request_tensors[i]
                    if tensor.is_cpu():
                        target[start : start + count].set(tensor.as_numpy(), self.stream)
                    else:  # GPU memory from preprocess: a device-to-device copy into the bound buffer
                        source = cp.from_dlpack(tensor.to_dlpack())
                        if not source.flags.c_contiguous or source.dtype != target.dtype:
                            raise ValueError(
                                f"{name}: expected contiguous {target.dtype}, "
                                f"got {source.dtype} strides {source.strides}"
                            )
                        self._copy_in(target[start : start + count].data.ptr, source, count * row_bytes)
                    start += count
            self._run(run)
        responses, start = [], 0
        for count in counts:  # views: the stub copies them out before the next execute() reuses the buffers
            outputs = [pb_utils.Tensor(n, run.outputs[n][start : start + count]) for n in self.output_names]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
            start += count
        return responses
