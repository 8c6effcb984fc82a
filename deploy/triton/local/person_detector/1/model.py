"""Triton python-backend model: the exported YOLO ONNX file (path in $AVAFORGE_DETECTOR_ONNX) run with ONNX
Runtime. The requests the dynamic batcher hands over together run as one batch (per image size), which is what
dynamic batching is for; each instance gets its share of the cores ($AVAFORGE_DETECTOR_THREADS, else the CPUs
available divided by the instance count), so instances do not fight over them."""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.config = json.loads(args["model_config"])
        instances = sum(int(g.get("count", 1)) for g in self.config.get("instance_group", [])) or 1
        threads = int(os.environ.get("AVAFORGE_DETECTOR_THREADS") or 0)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or max(1, len(os.sched_getaffinity(0)) // instances)
        options.inter_op_num_threads = 1
        path = os.environ["AVAFORGE_DETECTOR_ONNX"]
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def execute(self, requests):
        images = [pb_utils.get_input_tensor_by_name(r, "images").as_numpy() for r in requests]
        outputs = [None] * len(requests)
        by_shape = {}
        for i, batch in enumerate(images):
            by_shape.setdefault(batch.shape[1:], []).append(i)
        for indices in by_shape.values():
            batch = np.concatenate([images[i] for i in indices]).astype(np.float32)
            (output,) = self.session.run(None, {self.input_name: batch})
            bounds = np.cumsum([len(images[i]) for i in indices])[:-1]
            for i, part in zip(indices, np.split(output.astype(np.float32), bounds), strict=True):
                outputs[i] = part
        return [pb_utils.InferenceResponse([pb_utils.Tensor("output0", out)]) for out in outputs]
