"""Tracking measured on ground truth: the MOT boxes PyPI ``motmetrics`` ships (TUD-Campus, TUD-Stadtmitte).

The ground-truth boxes, without their ids, go through ``avaforge.stages.track.track_clip`` as detections at
the default rate (every 3rd frame, as 10 fps of a 30 fps clip); motmetrics scores the tracks against the
ground truth on those frames: IDF1, id switches, MOTA. Two inputs: the boxes as they are, and the boxes as a
detector gives them (seeded): DROP of them missing, corners jittered by JITTER of the box size.
The package ships boxes but no images, so the appearance embedder cannot see the people: each box gets a
random unit vector (no two alike), which leaves Deep SORT its motion model and IoU matching. The numbers
measure that part of the tracker, per setting.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import cv2
import motmetrics as mm
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from avaforge.boxes import Boxes
from avaforge.formats.timeline import rawframe_name
from avaforge.settings import TrackSettings
from avaforge.stages.detect import Detections
from avaforge.stages.track import track_clip

STRIDE = 3  # the default: tracking_fps 10 on 30 fps rawframes (--stride for another rate)
SEQUENCES = ("TUD-Campus", "TUD-Stadtmitte")  # 640x480, 25 fps
DROP, JITTER = 0.2, 0.05


class NoAppearance:
    """Random unit vectors: no two boxes look alike, so only motion and IoU can match them."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def embed(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        v = self.rng.normal(size=(len(boxes), 128)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def load_gt(name: str) -> dict[int, np.ndarray]:
    """frame -> rows [id, x1, y1, x2, y2] from the package's MOT ``gt.txt``."""
    path = Path(mm.__file__).parent / "data" / name / "gt.txt"
    rows = np.loadtxt(path, delimiter=",")
    out: dict[int, np.ndarray] = {}
    for f in np.unique(rows[:, 0]).astype(int):
        r = rows[rows[:, 0] == f]
        out[f] = np.stack([r[:, 1], r[:, 2], r[:, 3], r[:, 2] + r[:, 4], r[:, 3] + r[:, 5]], axis=1)
    return out


def given_boxes(rows: np.ndarray, rng: np.random.Generator | None) -> Boxes:
    """(N, 4) boxes -> detections, score 1; with ``rng``: DROP missing, corners jittered."""
    if rng is not None:
        rows = rows[rng.random(len(rows)) >= DROP]
        size = np.concatenate([rows[:, 2:4] - rows[:, 0:2]] * 2, axis=1)
        rows = rows + rng.normal(scale=JITTER, size=rows.shape) * size
    return Boxes(rows, np.ones(len(rows)))


def xywh(b: np.ndarray) -> np.ndarray:
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def run(name: str, settings: TrackSettings, frames_dir: Path, degrade: bool, stride: int = STRIDE) -> dict:
    gt = load_gt(name)
    frames = [f for f in sorted(gt) if (f - 1) % stride == 0]
    rng = np.random.default_rng(0) if degrade else None
    dets = Detections(frames, [given_boxes(gt[f][:, 1:5], rng) for f in frames])
    tracks = track_clip(frames_dir, dets, settings, 25 / stride, NoAppearance())
    acc = mm.MOTAccumulator(auto_id=True)
    for f in frames:
        hyp = tracks.boxes.get(f, Boxes.empty(tracked=True))
        dist = mm.distances.iou_matrix(xywh(gt[f][:, 1:5]), xywh(hyp.xyxy), max_iou=0.5)
        acc.update(gt[f][:, 0].astype(int).tolist(), hyp.tracked_ids.astype(int).tolist(), dist)
    summary = mm.metrics.create().compute(acc, metrics=["idf1", "num_switches", "mota"])
    return {k: round(float(v), 3) for k, v in summary.iloc[0].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--stride", type=int, default=STRIDE, help="track every n-th frame (3: 10 of 30 fps)")
    args = ap.parse_args()
    grid = {"max_iou_distance": (0.5, 0.7, 0.9), "n_init": (1, 3), "max_age_s": (1.0, 3.0)}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        blank = np.full((480, 640, 3), 114, np.uint8)  # the embedder is blind; frames only need to exist
        for f in range(1, 200):
            cv2.imwrite(str(Path(tmp) / rawframe_name(f)), blank)
        for values in itertools.product(*grid.values()):
            row: dict = dict(zip(grid, values, strict=True))
            s = replace(TrackSettings(), **row)
            for name in SEQUENCES:
                row[name] = run(name, s, Path(tmp), degrade=False, stride=args.stride)
                row[f"{name} detector-like"] = run(name, s, Path(tmp), degrade=True, stride=args.stride)
            results.append(row)
            print(json.dumps(row), flush=True)
    best = max(results, key=lambda r: sum(r[f"{n} detector-like"]["idf1"] for n in SEQUENCES))
    print("best mean IDF1 (detector-like boxes):", json.dumps(best))
    if args.json:
        body = {"stride": args.stride, "drop": DROP, "jitter": JITTER, "results": results, "best": best}
        args.json.write_text(json.dumps(body, indent=1) + "\n")


if __name__ == "__main__":
    main()
