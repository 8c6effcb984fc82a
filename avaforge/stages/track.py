"""Track: Deep SORT over the detected frames of a clip; every detection gets a track id.

Each detection is passed to deep-sort-realtime with its index as ``others``; the track that took the
detection in that frame (matched or newly created, tentative included) reports it back, so every keyframe box
has an id — never -1. Raw ids are renumbered per clip (= per AVA video) contiguously from 0 in order of first
appearance.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avaforge.formats.timeline import keyframe_index
from avaforge.fsutil import atomic_write_bytes
from avaforge.settings import TrackSettings
from avaforge.stages.detect import Detections, read_frame
from avaforge.tracking.embedder import Embedder


@dataclass
class Tracks:
    """Per detected frame, rows ``[track_id, x1, y1, x2, y2, score]`` (pixels)."""

    boxes: dict[int, np.ndarray]

    def at_second(self, second: int) -> np.ndarray:
        return self.boxes.get(keyframe_index(second), np.zeros((0, 6)))

    @property
    def track_ids(self) -> list[int]:
        ids = {int(i) for rows in self.boxes.values() for i in rows[:, 0]}
        return sorted(ids)

    def to_bytes(self) -> bytes:
        data = {
            str(f): [[int(r[0]), *(round(float(v), 3) for v in r[1:5]), round(float(r[5]), 5)] for r in rows]
            for f, rows in sorted(self.boxes.items())
        }
        return json.dumps({"frames": data}, separators=(",", ":")).encode()

    def save(self, path: str | Path) -> None:
        atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> Tracks:
        data = json.loads(Path(path).read_text())["frames"]
        return cls({int(f): np.array(rows, dtype=np.float64).reshape(-1, 6) for f, rows in data.items()})


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


def track_clip(
    frame_dir: str | Path,
    detections: Detections,
    settings: TrackSettings,
    detected_fps: float,
    embedder: Embedder,
    progress: Callable[[int], None] | None = None,
) -> Tracks:
    tracker = _deepsort(settings, detected_fps)
    raw: dict[int, list[tuple[str, np.ndarray]]] = {}
    frame_dir = Path(frame_dir)
    for frame, boxes in zip(detections.frames, detections.boxes, strict=True):
        if len(boxes):
            image = read_frame(frame_dir, frame)
            embeds = list(embedder.embed(image, boxes))
            dets = [([b[0], b[1], b[2] - b[0], b[3] - b[1]], float(b[4]), "person") for b in boxes]
            tracks = tracker.update_tracks(dets, embeds=embeds, others=list(range(len(boxes))))
        else:
            tracks = tracker.update_tracks([], embeds=[])
        assigned = {t.get_det_supplementary(): t.track_id for t in tracks if t.time_since_update == 0}
        raw[frame] = [(assigned[i], boxes[i]) for i in range(len(boxes)) if i in assigned]
        if progress:
            progress(1)
    ids: dict[str, int] = {}
    out: dict[int, np.ndarray] = {}
    for frame in sorted(raw):
        rows = []
        for tid, box in sorted(raw[frame], key=lambda r: (r[1][0], r[1][1])):
            new = ids.setdefault(tid, len(ids))
            rows.append([new, *box[:5]])
        out[frame] = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return Tracks(out)
