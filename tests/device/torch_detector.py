"""A stand-in detector for the lent GPU only (TensorRT cannot be installed there): the same network
(Ultralytics' TorchScript export of the same weights) and the same post-processing as the detector
graph (best class only, per-class NMS, top K, boxes mapped back to original pixels and clipped,
padding 0 / -1), in PyTorch on the GPU.

Its point is the hand-off: it refuses an `images` tensor that is not in GPU memory, so every answer
of the GPU ensemble proves that preprocess handed the batch over by DLPack with no host copy.
Config: FORCE_CPU_ONLY_INPUT_TENSORS "no". PyTorch comes from the device image's own environment.
"""

import json
import os
import sys

sys.path.append(os.environ.get("TORCH_SHIM", "/opt/torchshim"))  # torch without that env's NumPy 2

import torch  # noqa: E402
import torchvision  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


# Full FP32: with TF32 (PyTorch's default for cuDNN convolutions) batches of different sizes give
# boxes and scores that differ by more than the soak's tolerance (benchmarks/RESULTS.md).
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config["parameters"].items()}
        self.conf, self.iou, self.k = float(params["conf"]), float(params["iou"]), int(params["max_detections"])
        self.device = torch.device("cuda", int(args.get("model_instance_device_id") or 0))
        path = os.path.join(args["model_repository"], args["model_version"], "model.torchscript")
        self.network = torch.jit.load(path, map_location=self.device).eval()
        self.output_names = [o["name"] for o in config["output"]]
        self.gpu_batches = 0
        with torch.inference_mode():
            self.network(torch.zeros(1, 3, 640, 640, device=self.device))

    @torch.inference_mode()
    def _detect(self, images: torch.Tensor, letterbox: torch.Tensor):
        rows = self.network(images.float() / 255).transpose(1, 2)  # [B, N, 4 + C]
        xy, wh, scores = rows[..., :2], rows[..., 2:4], rows[..., 4:]
        boxes = torch.cat((xy - wh / 2, xy + wh / 2), -1)
        best, cls = scores.max(-1)
        b = len(rows)
        num = torch.zeros(b, 1, dtype=torch.int32, device=self.device)
        out_boxes = torch.zeros(b, self.k, 4, device=self.device)
        out_scores = torch.zeros(b, self.k, device=self.device)
        out_classes = torch.full((b, self.k), -1, dtype=torch.int32, device=self.device)
        for i in range(b):
            idx = torch.nonzero(best[i] > self.conf).squeeze(1)
            keep = idx[torchvision.ops.batched_nms(boxes[i, idx], best[i, idx], cls[i, idx], self.iou)[: self.k]]
            n = len(keep)
            pad, scale, size = letterbox[i, :2].repeat(2), letterbox[i, 2:4].repeat(2), letterbox[i, 4:].repeat(2)
            mapped = torch.minimum(((boxes[i, keep] - pad) / scale).clamp(min=0), size)
            num[i, 0], out_boxes[i, :n], out_scores[i, :n], out_classes[i, :n] = n, mapped, best[i, keep], cls[i, keep].int()
        return num, out_boxes, out_scores, out_classes

    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "images")
            if images.is_cpu():
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("detector received a CPU tensor: the hand-off copied to the host")))
                continue
            self.gpu_batches += 1
            pixels = torch.utils.dlpack.from_dlpack(images.to_dlpack())
            letterbox = pb_utils.get_input_tensor_by_name(request, "letterbox")
            params = (torch.utils.dlpack.from_dlpack(letterbox.to_dlpack()) if not letterbox.is_cpu()
                      else torch.tensor(letterbox.as_numpy().tolist()))
            outputs = self._detect(pixels, params.to(self.device))
            # the stub hands the outputs on once execute() returns, not on torch's stream: finish first
            torch.cuda.current_stream(self.device).synchronize()
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor.from_dlpack(n, o.contiguous()) for n, o in zip(self.output_names, outputs)]))
        return responses

    def finalize(self):
        pb_utils.Logger.log_info(f"torch_detector: {self.gpu_batches} batches received in GPU memory")
