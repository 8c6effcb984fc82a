"""Probe a video with ffprobe (through ffmpeg-python) into the facts the pipeline needs."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import ffmpeg

from avaforge.formats.errors import FormatError
from avaforge.video import ffmpeg_run


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int  # display size, after rotation metadata is applied
    height: int
    fps: float
    duration_s: float
    codec: str
    rotation: int  # degrees from the display matrix / rotate tag (ffmpeg applies it when decoding)
    num_frames: int | None  # as the container reports it (may be absent)


def probe_video(path: str | Path) -> VideoInfo:
    """Facts about the first video stream; a FormatError names the file for anything that is not a video."""
    p = Path(path)
    if not p.is_file():
        raise FormatError("file not found", str(p))
    if p.stat().st_size == 0:
        raise FormatError("empty file (0 bytes), not a video", str(p))
    try:
        info = ffmpeg_run.probe(str(p))
    except ffmpeg.Error as exc:
        detail = (exc.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise FormatError(
            f"not a readable video: {detail[-1] if detail else 'ffprobe failed'}", str(p)
        ) from None
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "video"]
    streams = [s for s in streams if not s.get("disposition", {}).get("attached_pic")]
    if not streams:
        kinds = sorted({s.get("codec_type", "?") for s in info.get("streams", [])})
        raise FormatError(f"no video stream (streams: {', '.join(kinds) or 'none'})", str(p))
    s = streams[0]
    fps = _rate(s.get("avg_frame_rate")) or _rate(s.get("r_frame_rate"))
    if not fps:
        raise FormatError("video stream has no frame rate", str(p))
    duration = _float(s.get("duration")) or _float(info.get("format", {}).get("duration"))
    if not duration or duration <= 0:
        raise FormatError("video has no duration (truncated or still image?)", str(p))
    rotation = _rotation(s)
    width, height = int(s["width"]), int(s["height"])
    if rotation % 180:
        width, height = height, width
    nb = s.get("nb_frames")
    return VideoInfo(
        path=str(p),
        width=width,
        height=height,
        fps=fps,
        duration_s=duration,
        codec=s.get("codec_name", "?"),
        rotation=rotation,
        num_frames=int(nb) if nb and str(nb).isdigit() else None,
    )


def _rate(value: str | None) -> float | None:
    try:
        r = Fraction(value) if value else None
    except (ValueError, ZeroDivisionError):
        return None
    return float(r) if r else None


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _rotation(stream: dict[str, Any]) -> int:
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            return round(float(side["rotation"])) % 360
    tag = stream.get("tags", {}).get("rotate")
    return int(tag) % 360 if tag and tag.lstrip("-").isdigit() else 0
