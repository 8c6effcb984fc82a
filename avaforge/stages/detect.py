"""Detect: people in the frames of a clip, at the tracking rate plus every keyframe, in batches.

JPEG decoding of the next batch overlaps inference of the current one (a reader thread), so the detector
is never idle waiting for disk.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from avaforge.detection import Detector
from avaforge.formats.errors import FormatError
from avaforge.formats.timeline import FPS, keyframe_index, rawframe_name
from avaforge.fsutil import atomic_write_bytes

MIN_BOX_PX = 2.0  # thinner boxes are noise and break Deep SORT's crop


def detection_stride(tracking_fps: float) -> int:
    if not 0 < tracking_fps <= FPS:
        raise ValueError(f"tracking_fps must be in (0, {FPS}], got {tracking_fps}")
    return max(1, round(FPS / tracking_fps))


def frames_to_detect(num_frames: int, tracking_fps: float, keyframe_seconds: tuple[int, ...]) -> list[int]:
    """1-based frames: every stride-th frame from frame 1, plus every keyframe 30t+1."""
    stride = detection_stride(tracking_fps)
    frames = set(range(1, num_frames + 1, stride)) | {keyframe_index(t) for t in keyframe_seconds}
    return sorted(f for f in frames if f <= num_frames)


@dataclass
class Detections:
    frames: list[int]
    boxes: list[np.ndarray]  # per frame float64 (N, 5) [x1, y1, x2, y2, score] in pixels
    model_version: str = ""

    def by_frame(self) -> dict[int, np.ndarray]:
        return dict(zip(self.frames, self.boxes, strict=True))

    def to_bytes(self) -> bytes:
        """An ``.npz`` with fixed zip timestamps: the same detections always give the same bytes (and key)."""
        counts = np.array([len(b) for b in self.boxes], dtype=np.int32)
        flat = np.concatenate(self.boxes) if self.boxes else np.zeros((0, 5))
        arrays = {
            "frames": np.array(self.frames, dtype=np.int32),
            "counts": counts,
            "boxes": flat,
            "model_version": np.array(self.model_version),
        }
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for name, array in arrays.items():
                member = io.BytesIO()
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                zf.writestr(info, member.getvalue())
        return buf.getvalue()

    def save(self, path: str | Path) -> None:
        atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> Detections:
        with np.load(path) as z:
            splits = np.cumsum(z["counts"])[:-1]
            boxes = np.split(z["boxes"], splits) if len(z["counts"]) else []
            return cls(z["frames"].tolist(), [b.reshape(-1, 5) for b in boxes], str(z["model_version"]))


def merge_detections(parts: list[Detections]) -> Detections:
    """One clip's detections from batches detected apart (any order); frames must not repeat."""
    pairs = sorted((f, b) for part in parts for f, b in zip(part.frames, part.boxes, strict=True))
    frames = [f for f, _ in pairs]
    if len(set(frames)) != len(frames):
        raise ValueError("a frame was detected in two batches")
    versions = {p.model_version for p in parts}
    if len(versions) > 1:
        raise ValueError(f"batches come from different models: {sorted(versions)}")
    return Detections(frames, [b for _, b in pairs], versions.pop() if versions else "")


def batches_of(frames: list[int], size: int) -> list[list[int]]:
    """Fan-out batches; sizes that are multiples of the detector batch keep its inner batches (and so its
    floating-point results) identical to one in-process pass over all frames."""
    return [frames[i : i + size] for i in range(0, len(frames), size)]


def read_frame(frame_dir: Path, frame: int) -> np.ndarray:
    path = frame_dir / rawframe_name(frame)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FormatError("missing or unreadable frame", str(path))
    return image


def _batches(frame_dir: Path, frames: list[int], size: int) -> Iterator[tuple[list[int], list[np.ndarray]]]:
    chunks = [frames[i : i + size] for i in range(0, len(frames), size)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(lambda c: [read_frame(frame_dir, f) for f in c], chunks[0]) if chunks else None
        for i, chunk in enumerate(chunks):
            images = pending.result()  # type: ignore[union-attr]
            if i + 1 < len(chunks):
                pending = pool.submit(lambda c: [read_frame(frame_dir, f) for f in c], chunks[i + 1])
            yield chunk, images


def detect_clip(
    frame_dir: str | Path,
    frames: list[int],
    detector: Detector,
    batch: int,
    progress: Callable[[int], None] | None = None,
) -> Detections:
    out_frames: list[int] = []
    out_boxes: list[np.ndarray] = []
    for chunk, images in _batches(Path(frame_dir), frames, batch):
        for frame, boxes in zip(chunk, detector.detect(images), strict=True):
            keep = ((boxes[:, 2] - boxes[:, 0]) >= MIN_BOX_PX) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_BOX_PX)
            out_frames.append(frame)
            out_boxes.append(boxes[keep])
        if progress:
            progress(len(chunk))
    return Detections(out_frames, out_boxes, detector.model_version)
