"""Proposals: the dense proposals of a clip, one key per keyframe second, (0, 5) where nobody is seen."""

from __future__ import annotations

import numpy as np

from avaforge.formats.ava_csv import proposal_key
from avaforge.formats.proposals import Proposals, normalise
from avaforge.formats.timeline import keyframe_index
from avaforge.settings import ProposalSettings
from avaforge.stages.detect import Detections
from avaforge.stages.frames import FramesInfo


def build_proposals(frames: FramesInfo, detections: Detections, settings: ProposalSettings) -> Proposals:
    by_frame = detections.by_frame()
    scale = np.array([frames.width, frames.height, frames.width, frames.height, 1.0])
    out: dict[str, np.ndarray] = {}
    for t in frames.keyframe_seconds:
        frame = keyframe_index(t)
        if frame not in by_frame:
            raise ValueError(f"clip {frames.clip_id}: keyframe {frame} of second {t} was not detected")
        boxes = by_frame[frame]
        boxes = boxes[boxes[:, 4] >= settings.min_score]
        boxes = boxes[np.argsort(-boxes[:, 4], kind="stable")]
        out[proposal_key(frames.clip_id, t)] = (boxes / scale).clip(0.0, 1.0)
    return normalise(out)
