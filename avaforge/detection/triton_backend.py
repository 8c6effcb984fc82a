"""Triton backend: the same letterbox and NMS as the ONNX Runtime backend, inference on a Triton server
(tritonclient gRPC). Model name, version and tensor names come from the settings; the number of classes and
the model version from the model's config on the server."""

from __future__ import annotations

import numpy as np

from avaforge.detection.prepost import postprocess, preprocess
from avaforge.formats.errors import FormatError
from avaforge.settings import DetectSettings

INPUT, OUTPUT = "images", "output0"


class TritonDetector:
    def __init__(self, settings: DetectSettings, timeout_s: float = 60.0) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        self.settings = settings
        self.timeout_s = timeout_s
        self._grpc = grpcclient
        self.client = grpcclient.InferenceServerClient(settings.triton_url)
        try:
            if not self.client.is_model_ready(settings.triton_model, settings.triton_version):
                raise FormatError(f"model {settings.triton_model!r} is not ready", settings.triton_url)
            config = self.client.get_model_config(settings.triton_model, settings.triton_version).config
        except InferenceServerException as exc:
            raise FormatError(f"Triton server unavailable: {exc.message()}", settings.triton_url) from None
        params = {k: v.string_value for k, v in config.parameters.items()}
        self.num_classes = int(params.get("num_classes", "1"))
        self.model_version = (
            f"triton:{settings.triton_model}:{params.get('model_digest', settings.triton_version)}"
        )

    def detect(self, images: list[np.ndarray]) -> list[np.ndarray]:
        if not images:
            return []
        s = self.settings
        batch, lbs = preprocess(images, s.imgsz)
        inp = self._grpc.InferInput(INPUT, list(batch.shape), "FP32")
        inp.set_data_from_numpy(batch)
        result = self.client.infer(
            s.triton_model,
            [inp],
            model_version=s.triton_version,
            outputs=[self._grpc.InferRequestedOutput(OUTPUT)],
            client_timeout=self.timeout_s,
        )
        output = result.as_numpy(OUTPUT)
        return postprocess(output, lbs, images[0].shape[:2], self.num_classes, s.conf, s.iou, s.max_det)
