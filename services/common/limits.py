"""What a deployment accepts as a source video: size, duration and resolution, set by the deployment (env),
never by a job. The size is enforced by the gateway while the upload streams in (RESOURCE_EXHAUSTED); duration
and resolution by the ingest, from ffprobe's facts, before anything is cut (the job fails at ingest with a
FormatError - INVALID_ARGUMENT on the ingest API - naming the limit, its variable and the video's value)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from avaforge.formats.errors import FormatError
from avaforge.video.probe import VideoInfo

ENV = {
    "max_upload_mb": "AVAFORGE_MAX_UPLOAD_MB",
    "max_duration_s": "AVAFORGE_MAX_VIDEO_DURATION_S",
    "max_width": "AVAFORGE_MAX_VIDEO_WIDTH",
    "max_height": "AVAFORGE_MAX_VIDEO_HEIGHT",
}


@dataclass(frozen=True)
class VideoLimits:
    max_upload_mb: float = 2048.0
    max_duration_s: float = 4 * 3600.0  # a 4 h recording: about 432,000 rawframes at 30 fps
    max_width: int = 7680  # 8K UHD, after rotation
    max_height: int = 7680  # portrait 8K too

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> VideoLimits:
        values = {}
        for field, var in ENV.items():
            if env.get(var):
                kind = float if field in ("max_upload_mb", "max_duration_s") else int
                try:
                    values[field] = kind(env[var])
                except ValueError:
                    raise ValueError(f"{var}={env[var]!r} is not a number") from None
        return cls(**values)

    def check(self, info: VideoInfo, where: str) -> None:
        """Refuse a probed video beyond a limit, naming the limit and the video's value."""
        if info.duration_s > self.max_duration_s:
            raise FormatError(
                f"video duration {info.duration_s:.1f} s exceeds the limit "
                f"{ENV['max_duration_s']}={self.max_duration_s:g} s",
                where,
            )
        for value, limit, field in (
            (info.width, self.max_width, "max_width"),
            (info.height, self.max_height, "max_height"),
        ):
            if value > limit:
                raise FormatError(
                    f"video resolution {info.width}x{info.height} exceeds the limit {ENV[field]}={limit}",
                    where,
                )
