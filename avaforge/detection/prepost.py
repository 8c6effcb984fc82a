"""Letterbox pre-processing and NMS post-processing, identical to ultralytics' predictor.

Shared by the ONNX Runtime and Triton backends so that every backend sees the same input tensor and decodes
the same way: rectangular letterbox (auto, stride 32, pad value 114), RGB, /255; class-0 candidates above
``conf``, NMS at ``iou``, at most ``max_det`` boxes, scaled back and clipped to the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Letterbox:
    shape: tuple[int, int]  # padded (h, w)
    gain: tuple[float, float]  # (y, x)
    pad: tuple[int, int]  # (x, y) left/top


def letterbox_params(h: int, w: int, imgsz: int, stride: int = 32) -> Letterbox:
    r = min(imgsz / h, imgsz / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (imgsz - new_w) % stride / 2, (imgsz - new_h) % stride / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    return Letterbox((new_h + top + bottom, new_w + left + right), (new_h / h, new_w / w), (left, top))


def preprocess(images: list[np.ndarray], imgsz: int, stride: int = 32) -> tuple[np.ndarray, list[Letterbox]]:
    """Same-sized BGR images -> float32 NCHW RGB in [0, 1] and each image's letterbox."""
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"a batch needs images of one size, got {sorted(shapes)}")
    h, w = images[0].shape[:2]
    lb = letterbox_params(h, w, imgsz, stride)
    new_w, new_h = round(lb.gain[1] * w), round(lb.gain[0] * h)
    left, top = lb.pad
    bottom, right = lb.shape[0] - new_h - top, lb.shape[1] - new_w - left
    batch = np.empty((len(images), 3, lb.shape[0], lb.shape[1]), dtype=np.float32)
    for i, im in enumerate(images):
        resized = (
            cv2.resize(im, (new_w, new_h), interpolation=cv2.INTER_LINEAR) if (h, w) != (new_h, new_w) else im
        )
        padded = cv2.copyMakeBorder(
            resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114)
        )
        batch[i] = padded[:, :, ::-1].transpose(2, 0, 1)
    batch /= 255.0
    return batch, [lb] * len(images)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy NMS, highest score first (torchvision.ops.nms semantics)."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = iw * ih
        order = rest[inter / (areas[i] + areas[rest] - inter + 1e-12) <= iou]
    return np.asarray(keep, dtype=np.int64)


def postprocess(
    output: np.ndarray,
    letterboxes: list[Letterbox],
    orig_hw: tuple[int, int],
    num_classes: int,
    conf: float,
    iou: float,
    max_det: int,
) -> list[np.ndarray]:
    """Raw YOLO output (B, 4 + nc + extra, anchors) -> per image float64 (N, 5) person boxes in pixels."""
    results = []
    h0, w0 = orig_hw
    for pred, lb in zip(output, letterboxes, strict=True):
        cls_scores = pred[4 : 4 + num_classes]
        best = cls_scores.argmax(0)
        score = cls_scores.max(0)
        cand = np.nonzero((best == 0) & (score > conf))[0]
        if cand.size == 0:
            results.append(np.zeros((0, 5)))
            continue
        cx, cy, bw, bh = pred[:4, cand].astype(np.float64)
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        scores = score[cand].astype(np.float64)
        keep = nms(boxes, scores, iou)[:max_det]
        boxes, scores = boxes[keep], scores[keep]
        boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - lb.pad[0]) / lb.gain[1]).clip(0, w0)
        boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - lb.pad[1]) / lb.gain[0]).clip(0, h0)
        results.append(np.concatenate([boxes, scores[:, None]], axis=1))
    return results
