"""Ingest/cut: probe a video and cut it into clips normalised to 30 fps with exact frame counts.

Cutting re-encodes (x264, constant 30 fps): a stream copy snaps to codec keyframes, so its boundaries and
frame counts are not exact. Input seeking (``-ss`` before ``-i``) is frame-accurate when re-encoding, and
``-frames:v N`` bounds the clip to N = floor(length * 30) frames, so a 10 s window has exactly 300 frames
whatever the source rate (29.97, 28, 10 fps...). ffmpeg applies rotation metadata while decoding, so clips
are stored upright. A clip shorter than the context margins is still cut; it simply has no labelled
seconds (the runner reports it) — its frames remain valid context for nothing, so prepare warns.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ffmpeg

from avaforge.formats.ava_csv import check_video_id
from avaforge.formats.errors import FormatError
from avaforge.formats.timeline import FPS
from avaforge.settings import ClipPlan, CutSettings
from avaforge.video.ffmpeg_run import count_frames, run
from avaforge.video.probe import VideoInfo, probe_video


@dataclass(frozen=True)
class ClipSpec:
    clip_id: str  # the AVA video id of this clip (its rawframes folder name)
    video_id: str  # the source video's id; train/val are split by it
    index: int
    start_s: float
    length_s: float

    @property
    def target_frames(self) -> int:
        return math.floor(self.length_s * FPS + 1e-6)


@dataclass(frozen=True)
class ClipInfo:
    clip_id: str
    video_id: str
    source: str
    start_s: float
    length_s: float
    num_frames: int
    width: int
    height: int
    fps: int = FPS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClipInfo:
        return cls(**data)


def plan_clips(info: VideoInfo, plan: ClipPlan, video_id: str) -> list[ClipSpec]:
    """Clip boundaries for a probed video; explicit segments beyond the video's end are an error."""
    check_video_id(video_id)
    duration = info.duration_s
    if plan.mode == "whole":
        return [ClipSpec(video_id, video_id, 0, 0.0, duration)]
    if plan.mode == "windows":
        if plan.window_s <= 0:
            raise FormatError(f"window length must be > 0, got {plan.window_s}", "clip plan")
        starts = [i * plan.window_s for i in range(math.ceil(duration / plan.window_s - 1e-9))]
        segments = [(s, min(plan.window_s, duration - s)) for s in starts]
        segments = [(s, n) for s, n in segments if n >= plan.min_clip_s] or [(0.0, duration)]
    elif plan.mode == "explicit":
        if not plan.segments:
            raise FormatError("explicit clip plan without segments", "clip plan")
        segments = [(float(s), float(n)) for s, n in plan.segments]
        for s, n in segments:
            if s < 0 or n <= 0 or s + n > duration + 1e-3:
                raise FormatError(
                    f"segment start={s} length={n} is outside the {duration:.3f} s video", info.path
                )
    else:
        raise FormatError(f"unknown clip plan mode {plan.mode!r}", "clip plan")
    return [ClipSpec(f"{video_id}_c{i:03d}", video_id, i, s, n) for i, (s, n) in enumerate(sorted(segments))]


def segment(source: str, spec: ClipSpec) -> ffmpeg.nodes.FilterableStream:
    """The clip's frames as ffmpeg decodes them: input-seeked to the start, resampled to 30 fps.

    Both the clip encode and the rawframes come from this one graph, so they hold the same frames.
    """
    stream = ffmpeg.input(source, ss=f"{spec.start_s:.6f}") if spec.start_s > 0 else ffmpeg.input(source)
    return stream.video.filter("fps", fps=FPS)


def clip_output(video: ffmpeg.nodes.FilterableStream, spec: ClipSpec, path: Path, settings: CutSettings):  # type: ignore[no-untyped-def]
    return video.output(
        str(path),
        vcodec="libx264",
        preset=settings.preset,
        crf=settings.crf,
        pix_fmt="yuv420p",
        r=FPS,
        an=None,
        sn=None,
        movflags="+faststart",
        **{"frames:v": spec.target_frames},
    )


def cut_clip(
    source: str | Path,
    spec: ClipSpec,
    out_path: str | Path,
    settings: CutSettings,
    extra_output: Callable[[ffmpeg.nodes.FilterableStream], Any] | None = None,
) -> ClipInfo:
    """Re-encode one clip at exactly 30 fps into ``out_path`` (atomic: a failure leaves nothing behind).

    ``extra_output`` adds a second output to the same decode (the embedded runner writes the rawframes in
    the same pass); it receives the 30 fps stream and returns an ffmpeg output node.
    """
    src, out = str(source), Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial.mp4")
    video = segment(src, spec)
    if extra_output is None:
        graph = clip_output(video, spec, tmp, settings)
    else:
        branches = video.split()
        graph = ffmpeg.merge_outputs(clip_output(branches[0], spec, tmp, settings), extra_output(branches[1]))
    try:
        run(graph, src, spec.length_s)
        frames = count_frames(str(tmp), src, spec.length_s)
        if frames == 0:
            raise FormatError(f"clip {spec.clip_id}: no frames decoded (corrupt or truncated video?)", src)
        info = probe_video(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ClipInfo(
        clip_id=spec.clip_id,
        video_id=spec.video_id,
        source=src,
        start_s=spec.start_s,
        length_s=frames / FPS,
        num_frames=frames,
        width=info.width,
        height=info.height,
    )
