"""Detect: people in the frames of a clip, at the tracking rate plus every keyframe, in batches.

``detect_frames`` is the compute, on decoded frames; ``detect_clip`` feeds it JPEGs from a rawframes folder,
decoding the next batch while the detector works on the current one (a reader thread), so the detector is
never idle waiting for disk.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from avaforge.boxes import Boxes
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
    """The people found on each detected frame (ascending): untracked pixel boxes with scores."""

    frames: list[int]
    boxes: list[Boxes]
    model_version: str = ""

    def __post_init__(self) -> None:
        if len(self.frames) != len(self.boxes):
            raise ValueError(f"{len(self.frames)} frames but {len(self.boxes)} box sets")
        if any(b.space != "pixels" or b.track_id is not None for b in self.boxes):
            raise ValueError("detections are untracked pixel boxes")

    def by_frame(self) -> dict[int, Boxes]:
        return dict(zip(self.frames, self.boxes, strict=True))

    def to_bytes(self) -> bytes:
        """An ``.npz`` with fixed zip timestamps: the same detections always give the same bytes (and key).

        Members: ``frames`` int32 (F,), ``counts`` int32 (F,) boxes per frame, ``boxes`` float64 (sum, 5)
        rows ``[x1, y1, x2, y2, score]`` in pixels, ``model_version``. The frame size is not stored.
        """
        counts = np.array([len(b) for b in self.boxes], dtype=np.int32)
        flat = np.concatenate([b.to_rows() for b in self.boxes]) if self.boxes else np.zeros((0, 5))
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
    def load(cls, path: str | Path | io.BytesIO) -> Detections:
        with np.load(path) as z:
            splits = np.cumsum(z["counts"])[:-1]
            rows = np.split(z["boxes"], splits) if len(z["counts"]) else []
            return cls(z["frames"].tolist(), [Boxes.from_rows(r) for r in rows], str(z["model_version"]))


def merge_detections(parts: list[Detections]) -> Detections:
    """One clip's detections from batches detected apart (any order); frames must not repeat."""
    pairs = sorted(
        ((f, b) for part in parts for f, b in zip(part.frames, part.boxes, strict=True)), key=lambda p: p[0]
    )
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


def keep_people(boxes: Boxes) -> Boxes:
    """Drop boxes thinner than MIN_BOX_PX in either direction."""
    return boxes.with_min_side(MIN_BOX_PX)


def detect_frames(
    batches: Iterable[tuple[list[int], list[np.ndarray]]],
    detector: Detector,
    progress: Callable[[int], None] | None = None,
) -> Detections:
    """Detections of decoded frames, given as batches of (1-based frame numbers, BGR images)."""
    out_frames: list[int] = []
    out_boxes: list[Boxes] = []
    for chunk, images in batches:
        for frame, image, rows in zip(chunk, images, detector.detect(images), strict=True):
            height, width = image.shape[:2]
            out_frames.append(frame)
            out_boxes.append(keep_people(Boxes.from_rows(rows, "pixels", (width, height))))
        if progress:
            progress(len(chunk))
    return Detections(out_frames, out_boxes, detector.model_version)


def detect_clip(
    frame_dir: str | Path,
    frames: list[int],
    detector: Detector,
    batch: int,
    progress: Callable[[int], None] | None = None,
) -> Detections:
    """Detections of ``frames`` of a rawframes folder (the JPEGs are read here)."""
    return detect_frames(_batches(Path(frame_dir), frames, batch), detector, progress)
