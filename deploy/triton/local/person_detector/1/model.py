"""Triton python-backend model: the exported YOLO ONNX file (path in $AVAFORGE_DETECTOR_ONNX) run with ONNX
Runtime, batch by batch as Triton's dynamic batcher hands them over."""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        path = os.environ["AVAFORGE_DETECTOR_ONNX"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("AVAFORGE_DETECTOR_THREADS", "0"))
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.config = json.loads(args["model_config"])

    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "images").as_numpy().astype(np.float32)
            (output,) = self.session.run(None, {self.input_name: images})
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor("output0", output.astype(np.float32))])
            )
        return responses
