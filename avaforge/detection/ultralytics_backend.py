"""ultralytics backend: the .pt model in process (its own letterbox and NMS)."""

from __future__ import annotations

import numpy as np

from avaforge.detection.model_files import file_digest, prepare_ultralytics_env, resolve_weights
from avaforge.settings import DetectSettings


class UltralyticsDetector:
    def __init__(self, settings: DetectSettings) -> None:
        prepare_ultralytics_env()
        from ultralytics import YOLO

        self.settings = settings
        weights = resolve_weights(settings.weights)
        self.model = YOLO(str(weights))
        self.model_version = f"{weights.name}:{file_digest(weights)[:16]}"
        import torch

        # the GPU image runs this backend in-process on its GPU when Triton is not wanted
        self.device = "cuda:0" if torch.cuda.is_available() else "cpu"

    def detect(self, images: list[np.ndarray]) -> list[np.ndarray]:
        if not images:
            return []
        s = self.settings
        results = self.model.predict(
            images,
            imgsz=s.imgsz,
            conf=s.conf,
            iou=s.iou,
            classes=[0],
            max_det=s.max_det,
            device=self.device,
            verbose=False,
        )
        out = []
        for r in results:
            boxes = r.boxes
            out.append(
                np.concatenate([boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy()[:, None]], axis=1).astype(
                    np.float64
                )
            )
        return out
