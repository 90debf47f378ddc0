"""Triton Python-backend model `<variant>_detector` (CPU): ONNX Runtime on the detector graph
(the benchmarks also serve the bare network with it, as the classical path's server side).

This Triton build has no ONNX Runtime backend, so the graph (NMS and box mapping inside, see
yolo_triton/export/create_onnx.py) runs here. The requests of a batch go through session.run together, in
calls of SESSION_BATCH images; nothing is post-processed in Python: outputs are split back per
request as the graph wrote them.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from yolo_triton.contract import DEFAULT_IMGSZ, numpy_dtype

# Images per ONNX Runtime call. On the CPU a larger batch is no faster per image (2 cores, per
# image: yolo11n 55 / 52 / 60 ms at 1 / 4 / 8, yolo11m 392 / 410 / 422 ms), while ONNX Runtime's
# memory arena keeps the largest call's memory (yolo11m: 0.5 / 1.6 / 3.0 GB): Triton's batches
# (up to max_batch_size) run in calls of this many, which bounds each instance's memory.
SESSION_BATCH = 4


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        # no spin-waiting between operators: with two instances (and other models) on few cores,
        # an idle session's spinning threads took the CPU from the busy one
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]
        # warm-up, so the first request does not pay for ONNX Runtime's first run (a rect variant's
        # free height and width: the default square)
        self.session.run(
            self.output_names,
            {
                i["name"]: np.ones(
                    (1, *(d if d > 0 else DEFAULT_IMGSZ for d in i["dims"])), numpy_dtype(i["data_type"])
                )
                for i in config["input"]
            },
        )

    def execute(self, requests):
        inputs = [
            [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.input_names] for r in requests
        ]
        sizes = [len(x[0]) for x in inputs]
        batch = {name: np.concatenate([x[i] for x in inputs]) for i, name in enumerate(self.input_names)}
        runs = [
            self.session.run(self.output_names, {name: x[start : start + SESSION_BATCH] for name, x in batch.items()})
            for start in range(0, sum(sizes), SESSION_BATCH)
        ]
        outputs = [np.concatenate(parts) for parts in zip(*runs)]
        cuts = np.cumsum(sizes)[:-1]
        per_request = zip(*(np.split(out, cuts) for out in outputs))
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, o) for n, o in zip(self.output_names, outs)])
            for outs in per_request
        ]
