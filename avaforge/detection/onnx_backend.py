"""ONNX Runtime backend on the exported YOLO model (CPU here; CUDA provider when available)."""

from __future__ import annotations

import ast

import numpy as np
import onnxruntime as ort

from avaforge.detection.model_files import detector_model
from avaforge.detection.prepost import postprocess, preprocess
from avaforge.ort_threads import session_options
from avaforge.settings import DetectSettings


class OnnxDetector:
    def __init__(self, settings: DetectSettings) -> None:
        self.settings = settings
        self.model_path, self.model_version = detector_model(
            settings.weights, settings.imgsz, settings.precision
        )
        providers = [
            p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()
        ]
        self.session = ort.InferenceSession(str(self.model_path), session_options(), providers=providers)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.num_classes = len(ast.literal_eval(meta.get("names", "{0: 'person'}")))
        self.stride = int(meta.get("stride", 32))
        self.input_name = self.session.get_inputs()[0].name

    def detect(self, images: list[np.ndarray]) -> list[np.ndarray]:
        if not images:
            return []
        s = self.settings
        batch, lbs = preprocess(images, s.imgsz, self.stride)
        (output,) = self.session.run(None, {self.input_name: batch})
        return postprocess(output, lbs, images[0].shape[:2], self.num_classes, s.conf, s.iou, s.max_det)
