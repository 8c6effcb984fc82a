"""The detector's input per clip: the cheapest size that keeps the clip's people tall enough for the network.

YOLO11n-pose finds almost nobody below about ``min_person_px`` of height in its input (measured on the
hand-labelled benchmark, ``make bench-detect``), so the size follows the people, not a constant: a probe runs
the detector large on a few of the clip's frames, takes a low percentile of the person heights it finds, and
picks the smallest input (multiple of 32) that lifts them above the threshold, between ``imgsz`` and
``max_imgsz``. A source that would need more than ``max_imgsz`` is cut into overlapping tiles. The probe
reads frames picked from the clip's rawframes folder by count alone, so the choice depends only on the frames
and the detect settings (the cache key); it is made once per clip (``avaforge.steps.detect_plan``) and handed
to every batch of the clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from avaforge.detection import Detector
from avaforge.detection.tiling import detect_tiled
from avaforge.settings import DetectSettings

STRIDE = 32
# Of the probe's person heights: the small people, not the single smallest (noise). On the first 20 s of
# vtest.avi, 4 probe frames at the 10th percentile chose 1152 px and prepare pre-boxed 0.86 of the clear
# people; 8 frames at the 5th percentile choose 1280 (0.97 on the benchmark).
PROBE_PERCENTILE = 5
# Of the probe's boxes, those the detector is sure of: at the probe's double size the int8 model also boxes
# parts of people (a head, a pair of legs) small, at 0.1-0.63; on the benchmark's probe frames 9 of those 10
# boxes score below 0.5, and the clear people under 75 px (vtest) 0.78-0.89. Without this, such boxes were the
# 5th percentile and the plans doubled (vtest 1280t1x2; the 1080p set 1248t3x3 at precision 0.33).
PROBE_MIN_SCORE = 0.5
TILE_OVERLAP = 0.25
# Tiles only when a source needs this much more than max_imgsz: 1440x1080 vtest needing 1281 px ran as 1x2
# tiles of 992 px at 837 CPU ms a frame, one 1280 pass at 732 ms with the same recall (1.0).
TILE_ABOVE = 1.25


@dataclass(frozen=True)
class InputPlan:
    imgsz: int
    tiles: tuple[int, int] = (1, 1)  # rows, cols

    @property
    def tag(self) -> str:
        return str(self.imgsz) if self.tiles == (1, 1) else f"{self.imgsz}t{self.tiles[0]}x{self.tiles[1]}"

    def min_source_px(self, hw: tuple[int, int], min_person_px: float) -> float:
        """The person height in source pixels that reaches ``min_person_px`` in the network input."""
        h, w = hw
        rows, cols = self.tiles
        th = h if rows == 1 else h / (rows - (rows - 1) * TILE_OVERLAP)
        tw = w if cols == 1 else w / (cols - (cols - 1) * TILE_OVERLAP)
        return min_person_px * max(th, tw) / self.imgsz


def parse_tag(tag: str) -> InputPlan:
    """``InputPlan.tag`` back to the plan ("960", "640t2x2")."""
    if "t" in tag:
        size, grid = tag.split("t")
        rows, cols = grid.split("x")
        return InputPlan(int(size), (int(rows), int(cols)))
    return InputPlan(int(tag))


def _ceil32(x: float) -> int:
    return int(math.ceil(x / STRIDE) * STRIDE)


def plan_input(hw: tuple[int, int], person_heights: np.ndarray, s: DetectSettings) -> InputPlan:
    """The cheapest plan that shows the probe's small people at ``s.min_person_px`` or more."""
    long_side = max(hw)
    if (
        len(person_heights) == 0
    ):  # nobody found even large: people are tiny or absent; look as hard as allowed
        return InputPlan(s.max_imgsz)
    small = float(np.percentile(person_heights, PROBE_PERCENTILE))
    needed = long_side * s.min_person_px / max(small, 1.0)
    if needed <= TILE_ABOVE * s.max_imgsz:  # just over max_imgsz: one pass at max is cheaper than tiles
        return InputPlan(min(max(_ceil32(needed), s.imgsz), s.max_imgsz))
    # Tiles: per axis, as many overlapping tiles as keep each one within max_imgsz at the needed scale.
    scale = needed / long_side
    rows, cols = (
        max(1, math.ceil((side * scale / s.max_imgsz - TILE_OVERLAP) / (1 - TILE_OVERLAP))) for side in hw
    )
    plan = InputPlan(s.max_imgsz, (rows, cols))
    tile_long = plan.min_source_px(hw, s.max_imgsz)  # the tile's long side in source pixels
    return InputPlan(min(max(_ceil32(tile_long * scale), s.imgsz), s.max_imgsz), (rows, cols))


def probe_size(hw: tuple[int, int], s: DetectSettings) -> int:
    """The probe runs at twice the source's size (people at half the threshold still show), within bounds."""
    return min(max(_ceil32(2 * max(hw)), s.imgsz), s.probe_max_imgsz)


def probe_frames(frame_dir: Path, count: int) -> list[Path]:
    """``count`` frames evenly spread over the clip's rawframes, by file name order (every caller agrees)."""
    files = sorted(frame_dir.glob("*.jpg"))
    if len(files) <= count:
        return files
    return [files[round(i)] for i in np.linspace(0, len(files) - 1, num=count + 2)[1:-1]]


class SizedDetector:
    """A backend run at a chosen plan. Every backend reads ``settings.imgsz`` at each call and runs
    dynamic-size ONNX exports, so one loaded model serves every size."""

    def __init__(self, base: Detector, plan: InputPlan) -> None:
        self.base = base
        self.plan = plan
        self.model_version = f"{base.model_version}@{plan.tag}"

    def _run(self, images: list[np.ndarray], imgsz: int) -> list[np.ndarray]:
        settings = self.base.settings  # type: ignore[attr-defined]
        self.base.settings = replace(settings, imgsz=imgsz)  # type: ignore[attr-defined]
        try:
            return self.base.detect(images)
        finally:
            self.base.settings = settings  # type: ignore[attr-defined]

    def detect(self, images: list[np.ndarray]) -> list[np.ndarray]:
        if self.plan.tiles == (1, 1):
            return self._run(images, self.plan.imgsz)
        rows, cols = self.plan.tiles
        iou = self.base.settings.iou  # type: ignore[attr-defined]
        return detect_tiled(
            lambda crops: self._run(crops, self.plan.imgsz), images, rows, cols, TILE_OVERLAP, iou
        )


def probe_heights(base: Detector, images: list[np.ndarray], s: DetectSettings) -> np.ndarray:
    """Heights (source pixels) of the people the detector finds at the probe size on ``images`` with a score
    of PROBE_MIN_SCORE or more."""
    if not images:
        return np.zeros(0)
    boxes = SizedDetector(base, InputPlan(probe_size(images[0].shape[:2], s))).detect(images)
    sure = [b[b[:, 4] >= PROBE_MIN_SCORE] for b in boxes]
    return np.concatenate([b[:, 3] - b[:, 1] for b in sure]) if sure else np.zeros(0)


def plan_for_clip(base: Detector, frame_dir: Path, s: DetectSettings) -> InputPlan:
    """The clip's plan from a probe of ``s.probe_frames`` of its rawframes (``imgsz`` as is when not auto)."""
    if not s.auto_size:
        return InputPlan(s.imgsz)
    import cv2

    images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in probe_frames(frame_dir, s.probe_frames)]
    images = [im for im in images if im is not None]
    if not images:
        return InputPlan(s.imgsz)
    return plan_input(images[0].shape[:2], probe_heights(base, images, s), s)
