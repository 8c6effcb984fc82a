"""The 30 fps timeline: keyframes, labelled seconds, rawframe paths and ``included_timestamps.txt``.

Frames are 1-based: frame k shows time (k-1)/30 s, so the keyframe of second t is frame 30t+1. This matches
mmaction2 with ``fps=30, timestamp_start=0, start_index=1``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from avaforge.formats.errors import FormatError, read_text
from avaforge.fsutil import atomic_write_bytes

FPS = 30
RAWFRAME_TEMPLATE = "img_{:05d}.jpg"  # mmaction2's default filename_tmpl 'img_{:05}.jpg'
DEFAULT_CONTEXT_MARGIN_S = 2.0
# SlowFast/SlowOnly AVA configs sample clip_len=32 frames at frame_interval=2 around the keyframe.
DEFAULT_CLIP_LEN = 32
DEFAULT_FRAME_INTERVAL = 2


def keyframe_index(second: int) -> int:
    """1-based frame index of the keyframe of ``second``."""
    if second < 0:
        raise ValueError(f"negative second {second}")
    return FPS * second + 1


def rawframe_name(frame: int) -> str:
    if frame < 1:
        raise ValueError(f"frame indices are 1-based, got {frame}")
    return RAWFRAME_TEMPLATE.format(frame)


def rawframe_relpath(video_id: str, frame: int) -> str:
    """Path of a rawframe relative to the dataset root."""
    return f"rawframes/{video_id}/{rawframe_name(frame)}"


@dataclass(frozen=True)
class KeyframeSchedule:
    """Which seconds of a clip of ``num_frames`` (at 30 fps) have keyframes and which get labels.

    A second t is labelled when ``margin_start <= t``, ``t + margin_end <= duration`` and its sampling window
    lies in the clip: the model samples about +-1 s of context around a keyframe, so the first and last
    seconds are context only. A clip shorter
    than the two margins has no labelled seconds (``labelled_seconds`` is empty; callers report it).
    """

    num_frames: int
    margin_start_s: float = DEFAULT_CONTEXT_MARGIN_S
    margin_end_s: float = DEFAULT_CONTEXT_MARGIN_S

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"a clip needs at least one frame, got {self.num_frames}")
        if self.margin_start_s < 0 or self.margin_end_s < 0:
            raise ValueError("context margins must be >= 0")

    @property
    def duration_s(self) -> float:
        return self.num_frames / FPS

    @property
    def keyframe_seconds(self) -> list[int]:
        """Every second whose keyframe exists in the clip."""
        return [t for t in range(self.num_frames // FPS + 1) if keyframe_index(t) <= self.num_frames]

    @property
    def labelled_seconds(self) -> list[int]:
        """Also whatever the margins say, a second is labelled only when the frames mmaction2 samples for it
        exist (``sample_window``'s last frame is keyframe + 31): with ``margin_end_s`` under ~1.07 s the last
        second would otherwise get a window that runs past the clip, which training cannot read."""
        first = math.ceil(self.margin_start_s - 1e-9)
        return [
            t
            for t in self.keyframe_seconds
            if t >= first
            and t + self.margin_end_s <= self.duration_s + 1e-9
            and sample_window(t)[-1] <= self.num_frames
        ]

    def keyframes(self) -> dict[int, int]:
        """Labelled second -> 1-based keyframe index."""
        return {t: keyframe_index(t) for t in self.labelled_seconds}


def sample_window(
    second: int,
    shot_frames: int | None = None,
    clip_len: int = DEFAULT_CLIP_LEN,
    frame_interval: int = DEFAULT_FRAME_INTERVAL,
    start_index: int = 1,
    timestamp_start: int = 0,
) -> list[int]:
    """Frame numbers (rawframe file indices) mmaction2's ``SampleAVAFrames`` reads in test mode.

    This mirrors mmaction2 1.2.0 exactly, including its quirk of adding ``start_index`` twice: with
    ``start_index=1`` the middle frame it reads for second t is 30t+2, one frame after the keyframe 30t+1,
    and the window is 30t-30 ... 30t+32 in steps of 2. ``shot_frames`` is mmaction2's shot length
    ``(timestamp_end - timestamp_start) * fps`` (indices are clamped to ``[0, shot_frames - 1]`` before the
    second ``start_index``); None means no upper clamp, which shows every frame a keyframe really needs.
    """
    center = FPS * (second - timestamp_start) + start_index
    half = (clip_len // 2) * frame_interval
    end = center + ((clip_len + 1) // 2) * frame_interval
    upper = math.inf if shot_frames is None else shot_frames - 1
    return [int(min(max(i, 0), upper)) + start_index for i in range(center - half, end, frame_interval)]


def format_included_timestamps(seconds: Iterable[int]) -> str:
    return "".join(f"{t:04d}\n" for t in sorted(set(seconds)))


def write_included_timestamps(path: str | Path, seconds: Iterable[int]) -> None:
    atomic_write_bytes(path, format_included_timestamps(seconds).encode("utf-8"))


def read_included_timestamps(path: str | Path) -> list[int]:
    out = []
    for n, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(int(line))
        except ValueError:
            raise FormatError(f"{line!r} is not an integer second", f"{path}:{n}") from None
    return out
