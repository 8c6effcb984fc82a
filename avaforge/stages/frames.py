"""Frames: decode a 30 fps clip once into rawframes ``img_%05d.jpg`` (1-based); keyframes are a subset.

The keyframe of second t is rawframe 30t+1, so keyframe images are the rawframes themselves and need no
second decode. Frames are written to a temporary folder and renamed into place, so a failed run never
leaves a partial rawframes folder that a later stage could mistake for a finished one.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ffmpeg

from avaforge.formats.errors import FormatError
from avaforge.formats.timeline import KeyframeSchedule, rawframe_name
from avaforge.settings import FrameSettings, ScheduleSettings
from avaforge.stages.ingest import ClipInfo
from avaforge.video.ffmpeg_run import run


@dataclass(frozen=True)
class FramesInfo:
    clip_id: str
    num_frames: int
    width: int
    height: int
    keyframe_seconds: tuple[int, ...]  # every second whose keyframe exists
    labelled_seconds: tuple[int, ...]  # seconds outside the context margins

    def schedule(self, settings: ScheduleSettings) -> KeyframeSchedule:
        return KeyframeSchedule(self.num_frames, settings.margin_start_s, settings.margin_end_s)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FramesInfo:
        data = dict(data)
        data["keyframe_seconds"] = tuple(data["keyframe_seconds"])
        data["labelled_seconds"] = tuple(data["labelled_seconds"])
        return cls(**data)


def frames_info(clip: ClipInfo, schedule: ScheduleSettings) -> FramesInfo:
    sched = KeyframeSchedule(clip.num_frames, schedule.margin_start_s, schedule.margin_end_s)
    return FramesInfo(
        clip.clip_id,
        clip.num_frames,
        clip.width,
        clip.height,
        tuple(sched.keyframe_seconds),
        tuple(sched.labelled_seconds),
    )


def extract_frames(
    clip_path: str | Path,
    clip: ClipInfo,
    out_dir: str | Path,
    settings: FrameSettings,
    schedule: ScheduleSettings,
) -> FramesInfo:
    """Write every frame of the clip as a JPEG; the count must equal the clip's frame count."""
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        graph = ffmpeg.input(str(clip_path)).output(
            str(tmp / "img_%05d.jpg"),
            start_number=1,
            **{"q:v": settings.jpeg_qscale, "fps_mode": "passthrough"},
        )
        run(graph, str(clip_path))
        written = len(os.listdir(tmp))
        if written != clip.num_frames or not (tmp / rawframe_name(clip.num_frames)).exists():
            raise FormatError(f"decoded {written} frames, the clip has {clip.num_frames}", str(clip_path))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return frames_info(clip, schedule)
