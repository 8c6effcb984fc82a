"""Proposals: the dense proposals of a clip, one key per keyframe second, (0, 5) where nobody is seen."""

from __future__ import annotations

from avaforge.boxes import Boxes
from avaforge.formats.proposals import Proposals, from_boxes
from avaforge.formats.timeline import keyframe_index
from avaforge.settings import ProposalSettings
from avaforge.stages.detect import Detections
from avaforge.stages.frames import FramesInfo


def keyframe_proposals(
    frames: FramesInfo, detections: Detections, settings: ProposalSettings
) -> dict[int, Boxes]:
    """Keyframe second -> its people at or above ``settings.min_score``, normalised, highest score first."""
    by_frame = detections.by_frame()
    out: dict[int, Boxes] = {}
    for t in frames.keyframe_seconds:
        frame = keyframe_index(t)
        if frame not in by_frame:
            raise ValueError(f"clip {frames.clip_id}: keyframe {frame} of second {t} was not detected")
        boxes = by_frame[frame].with_size((frames.width, frames.height))
        out[t] = boxes.with_min_score(settings.min_score).by_score().to_normalised()
    return out


def build_proposals(frames: FramesInfo, detections: Detections, settings: ProposalSettings) -> Proposals:
    return from_boxes(frames.clip_id, keyframe_proposals(frames, detections, settings))
