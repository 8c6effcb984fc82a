"""Person detectors: one pre/post-processing (letterbox, NMS) shared by every backend.

Backends: ``onnx`` (ONNX Runtime on the exported YOLO model, the default), ``ultralytics`` (the .pt model in
process) and ``triton`` (tritonclient gRPC, same ONNX model served by Triton). All return, per image, a
float64 array (N, 5) of ``[x1, y1, x2, y2, score]`` in pixels, people only (class 0).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from avaforge.settings import DetectSettings


class Detector(Protocol):
    model_version: str

    def detect(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """BGR uint8 images (H, W, 3) -> per image float64 (N, 5) person boxes in pixels."""
        ...


def make_detector(settings: DetectSettings) -> Detector:
    if settings.backend == "onnx":
        from avaforge.detection.onnx_backend import OnnxDetector

        return OnnxDetector(settings)
    if settings.backend == "ultralytics":
        from avaforge.detection.ultralytics_backend import UltralyticsDetector

        return UltralyticsDetector(settings)
    if settings.backend == "triton":
        from avaforge.detection.triton_backend import TritonDetector

        return TritonDetector(settings)
    raise ValueError(f"unknown detector backend {settings.backend!r}")
