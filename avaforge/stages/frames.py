"""Frames: rawframes ``img_%05d.jpg`` (1-based, 30 fps) of a clip; keyframes are a subset.

The frames are decoded from the source through the same graph as the clip encode (``ingest.segment``), so
they are the clip's frames without a second lossy generation, and the embedded runner writes clip and frames
in one decode pass (``cut_with_frames``) with the same bytes as the two stages run apart.

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
from avaforge.settings import CutSettings, FrameSettings, ScheduleSettings
from avaforge.stages.ingest import ClipInfo, ClipSpec, cut_clip, segment
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


def frames_output(
    video: ffmpeg.nodes.FilterableStream, spec: ClipSpec, folder: Path, settings: FrameSettings
):  # type: ignore[no-untyped-def]
    return video.output(
        str(folder / "img_%05d.jpg"),
        start_number=1,
        **{"q:v": settings.jpeg_qscale, "fps_mode": "passthrough", "frames:v": spec.target_frames},
    )


def _partial(out: Path) -> Path:
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _finish(tmp: Path, out: Path, clip: ClipInfo, where: str, schedule: ScheduleSettings) -> FramesInfo:
    written = len(os.listdir(tmp))
    if written != clip.num_frames or not (tmp / rawframe_name(clip.num_frames)).exists():
        raise FormatError(f"decoded {written} frames, the clip has {clip.num_frames}", where)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return frames_info(clip, schedule)


def extract_frames(
    source: str | Path,
    spec: ClipSpec,
    clip: ClipInfo,
    out_dir: str | Path,
    settings: FrameSettings,
    schedule: ScheduleSettings,
) -> FramesInfo:
    """Decode the clip's segment of the source once into JPEGs; the count must equal the clip's."""
    out = Path(out_dir)
    tmp = _partial(out)
    try:
        run(frames_output(segment(str(source), spec), spec, tmp, settings), str(source), spec.length_s)
        return _finish(tmp, out, clip, str(source), schedule)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cut_with_frames(
    source: str | Path,
    spec: ClipSpec,
    clip_path: str | Path,
    out_dir: str | Path,
    cut: CutSettings,
    settings: FrameSettings,
    schedule: ScheduleSettings,
) -> tuple[ClipInfo, FramesInfo]:
    """Cut and frames in one decode pass (two ffmpeg outputs); same bytes as running them apart."""
    out = Path(out_dir)
    tmp = _partial(out)
    try:
        clip = cut_clip(source, spec, clip_path, cut, lambda video: frames_output(video, spec, tmp, settings))
        return clip, _finish(tmp, out, clip, str(source), schedule)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
