"""Track: Deep SORT over the detected frames of a clip; every detection gets a track id.

Each detection is passed to deep-sort-realtime with its index as ``others``; the track that took the
detection in that frame (matched or newly created, tentative included) reports it back, so every keyframe box
has an id — never -1. Raw ids are renumbered per clip (= per AVA video) contiguously from 0 in order of first
appearance.

``track_frames`` is the compute, on detections and a frame loader (any source of decoded frames);
``track_clip`` loads the frames from a rawframes folder.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avaforge.boxes import Boxes
from avaforge.formats.timeline import keyframe_index
from avaforge.fsutil import atomic_write_bytes
from avaforge.settings import TrackSettings
from avaforge.stages.detect import Detections, read_frame
from avaforge.tracking.embedder import Embedder


@dataclass
class Tracks:
    """Per detected frame, the tracked pixel boxes; track ids run 0.. per clip."""

    boxes: dict[int, Boxes]

    def __post_init__(self) -> None:
        if any(b.space != "pixels" or b.track_id is None for b in self.boxes.values()):
            raise ValueError("tracks are tracked pixel boxes")

    def at_second(self, second: int) -> Boxes:
        return self.boxes.get(keyframe_index(second), Boxes.empty(tracked=True))

    @property
    def track_ids(self) -> list[int]:
        return sorted({int(i) for b in self.boxes.values() for i in b.tracked_ids})

    def to_bytes(self) -> bytes:
        """``{"frames": {"<frame>": [[track_id, x1, y1, x2, y2, score], ...]}}``, pixels to 3 decimals."""
        data = {
            str(f): [
                [int(tid), *(round(float(v), 3) for v in xyxy), round(float(score), 5)]
                for tid, xyxy, score in zip(b.tracked_ids, b.xyxy, b.score, strict=True)
            ]
            for f, b in sorted(self.boxes.items())
        }
        return json.dumps({"frames": data}, separators=(",", ":")).encode()

    def save(self, path: str | Path) -> None:
        atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> Tracks:
        return cls.from_bytes(Path(path).read_bytes())

    @classmethod
    def from_bytes(cls, raw: bytes) -> Tracks:
        data = json.loads(raw)["frames"]
        out = {}
        for f, rows in data.items():
            arr = np.array(rows, dtype=np.float64).reshape(-1, 6)
            out[int(f)] = Boxes(arr[:, 1:5], arr[:, 5], "pixels", None, arr[:, 0])
        return cls(out)


def _deepsort(settings: TrackSettings, detected_fps: float):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deep-sort-realtime imports the deprecated pkg_resources
        from deep_sort_realtime.deepsort_tracker import DeepSort

    return DeepSort(
        max_age=max(1, round(settings.max_age_s * detected_fps)),
        n_init=settings.n_init,
        max_iou_distance=settings.max_iou_distance,
        max_cosine_distance=settings.max_cosine_distance,
        embedder=None,
    )


def track_frames(
    detections: Detections,
    load_frame: Callable[[int], np.ndarray],
    settings: TrackSettings,
    detected_fps: float,
    embedder: Embedder,
    progress: Callable[[int], None] | None = None,
) -> Tracks:
    """Deep SORT over the detected frames; ``load_frame(frame)`` gives the BGR image of a detected frame."""
    tracker = _deepsort(settings, detected_fps)
    raw: dict[int, tuple[Boxes, list[str]]] = {}
    for frame, boxes in zip(detections.frames, detections.boxes, strict=True):
        if len(boxes):
            embeds = list(embedder.embed(load_frame(frame), boxes.xyxy))
            dets = [
                ([x1, y1, x2 - x1, y2 - y1], float(score), "person")
                for (x1, y1, x2, y2), score in zip(boxes.xyxy, boxes.score, strict=True)
            ]
            tracks = tracker.update_tracks(dets, embeds=embeds, others=list(range(len(boxes))))
        else:
            tracks = tracker.update_tracks([], embeds=[])
        assigned = {t.get_det_supplementary(): t.track_id for t in tracks if t.time_since_update == 0}
        kept = [i for i in range(len(boxes)) if i in assigned]
        raw[frame] = (boxes.select(kept), [assigned[i] for i in kept])
        if progress:
            progress(1)
    return Tracks(renumber(raw))


def renumber(raw: Mapping[int, tuple[Boxes, Sequence[Hashable]]]) -> dict[int, Boxes]:
    """Boxes with the tracker's raw ids -> ids 0.. in order of first appearance (frames ascending, boxes by
    x1 then y1 within a frame); each frame's boxes come back in that order."""
    ids: dict[Hashable, int] = {}
    out: dict[int, Boxes] = {}
    for frame in sorted(raw):
        boxes, raw_ids = raw[frame]
        if len(raw_ids) != len(boxes):
            raise ValueError(f"frame {frame}: {len(boxes)} boxes but {len(raw_ids)} ids")
        order = sorted(range(len(boxes)), key=lambda i: (boxes.xyxy[i, 0], boxes.xyxy[i, 1]))
        new = [ids.setdefault(raw_ids[i], len(ids)) for i in order]
        out[frame] = boxes.select(order).with_track_ids(new)
    return out


def track_clip(
    frame_dir: str | Path,
    detections: Detections,
    settings: TrackSettings,
    detected_fps: float,
    embedder: Embedder,
    progress: Callable[[int], None] | None = None,
) -> Tracks:
    """Tracks of a clip whose frames are JPEGs in a rawframes folder."""
    folder = Path(frame_dir)
    return track_frames(
        detections, lambda f: read_frame(folder, f), settings, detected_fps, embedder, progress
    )
