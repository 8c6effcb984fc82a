"""Recall risk of a clip's detections: how many people per keyframe, and how many boxes sit just above the
size the detector stops finding people at (their neighbours of the same size are likely missed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from avaforge.detection.sizing import InputPlan, parse_tag
from avaforge.formats.timeline import keyframe_index

if TYPE_CHECKING:
    from avaforge.settings import PipelineSettings
    from avaforge.stages.detect import Detections
    from avaforge.stages.frames import FramesInfo

NEAR = 1.25  # a box up to 25% taller than the smallest findable person is "near the threshold"


@dataclass(frozen=True)
class RecallRisk:
    keyframes: int
    people_mean: float
    people_max: int
    near_share: float  # of keyframe boxes, the share near the size threshold
    threshold_px: float  # smallest findable person height in source pixels
    plan: str

    def line(self, clip_id: str) -> str:
        warn = (
            "  <- many people near the detector's limit: check for missed boxes"
            if self.near_share > 0.2
            else ""
        )
        return (
            f"{clip_id}: {self.people_mean:.1f} people per keyframe (max {self.people_max}, {self.keyframes} "
            f"keyframes), {100 * self.near_share:.0f}% of boxes within {NEAR:g}x of the "
            f"{self.threshold_px:.0f} px size limit (input {self.plan}){warn}"
        )


def recall_risk(
    keyframe_boxes: list[np.ndarray],
    hw: tuple[int, int],
    model_version: str,
    min_person_px: float,
    min_score: float,
) -> RecallRisk:
    """``keyframe_boxes``: per keyframe (N, 5+) boxes; the input plan is read from the model version tag."""
    plan = parse_tag(model_version.rpartition("@")[2]) if "@" in model_version else InputPlan(0)
    limit = plan.min_source_px(hw, min_person_px) if plan.imgsz else float("nan")
    kept = [b[b[:, 4] >= min_score] for b in keyframe_boxes]
    counts = [len(b) for b in kept]
    heights = np.concatenate([b[:, 3] - b[:, 1] for b in kept]) if kept else np.zeros(0)
    near = float(np.mean(heights < NEAR * limit)) if len(heights) and plan.imgsz else 0.0
    return RecallRisk(
        len(counts),
        float(np.mean(counts)) if counts else 0.0,
        max(counts, default=0),
        near,
        limit,
        plan.tag if plan.imgsz else "?",
    )


def clip_risk_line(clip_id: str, finfo: FramesInfo, dets: Detections, s: PipelineSettings) -> str:
    """The line ``prepare`` prints per clip: boxes the VIA project pre-fills (score >= via.min_score)."""
    by_frame = dets.by_frame()
    kf = [by_frame[k].to_rows() for t in finfo.keyframe_seconds if (k := keyframe_index(t)) in by_frame]
    risk = recall_risk(
        kf, (finfo.height, finfo.width), dets.model_version, s.detect.min_person_px, s.via.min_score
    )
    return risk.line(clip_id)
