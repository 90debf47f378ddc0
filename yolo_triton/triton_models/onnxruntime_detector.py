"""Triton Python-backend model `<variant>_detector` (CPU): ONNX Runtime on the detector graph
(the benchmarks also serve the bare network with it, as the classical path's server side).

This Triton build has no ONNX Runtime backend, so the graph (NMS and box mapping inside, see
export/create_onnx.py) runs here. All requests of a batch go through one session.run; nothing is
post-processed in Python: outputs are split back per request as the graph wrote them.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from yolo_triton.contract import DEFAULT_IMGSZ


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        # no arena: memory goes back after each batch (yolo11m at batch 8: 1.8 GB peak, 0.3 GB after,
        # vs 3.0 GB kept with the arena, at the same speed), so idle instances and variants cost little
        options.enable_cpu_mem_arena = False
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]
        # warm-up, so the first request does not pay for ONNX Runtime's first run (a rect variant's
        # free height and width: the default square)
        types = {"TYPE_UINT8": np.uint8, "TYPE_FP32": np.float32}
        self.session.run(self.output_names, {i["name"]: np.ones((1, *(d if d > 0 else DEFAULT_IMGSZ for d in i["dims"])), types[i["data_type"]])
                                             for i in config["input"]})

    def execute(self, requests):
        inputs = [[pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.input_names] for r in requests]
        sizes = [len(x[0]) for x in inputs]
        batch = {name: np.concatenate([x[i] for x in inputs]) for i, name in enumerate(self.input_names)}
        outputs = self.session.run(self.output_names, batch)
        cuts = np.cumsum(sizes)[:-1]
        per_request = zip(*(np.split(out, cuts) for out in outputs))
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, o) for n, o in zip(self.output_names, outs)])
                for outs in per_request]
