"""The classical path's server side on the lent GPU: the bare network (no NMS, no box mapping) with
the same runtime as the torch stand-in detector (Ultralytics' TorchScript export, PyTorch on the
GPU). FP32 `images` [B, 3, 640, 640] in, `output0` [B, 84, 8400] out, both through host memory, as
Ultralytics' Triton guide and levipereira's deployment serve it."""

import json
import os
import sys

sys.path.append(os.environ.get("TORCH_SHIM", "/opt/torchshim"))  # torch without that env's NumPy 2

import torch  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        self.device = torch.device("cuda", int(args.get("model_instance_device_id") or 0))
        path = os.path.join(args["model_repository"], args["model_version"], "model.torchscript")
        self.network = torch.jit.load(path, map_location=self.device).eval()
        with torch.inference_mode():
            self.network(torch.zeros(1, 3, 640, 640, device=self.device))

    @torch.inference_mode()
    def execute(self, requests):
        responses = []
        for request in requests:
            images = torch.from_numpy(pb_utils.get_input_tensor_by_name(request, "images").as_numpy()).to(self.device)
            output0 = self.network(images).float().cpu().numpy()
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("output0", output0)]))
        return responses
