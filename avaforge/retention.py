"""How long JetStream keeps job facts and dead letters: deployment settings (env), applied to the streams
every time a process connects (creating or updating them), so a changed limit takes effect on the next start.

AVAFORGE_JOBS_MAX_AGE_S: a job's KV facts are dropped this long after their last write (default 30 days; make
it longer than the longest job). AVAFORGE_DEAD_MAX_AGE_S / AVAFORGE_DEAD_MAX_MSGS: dead letters kept at most
this long / this many, oldest dropped first (defaults 30 days / 100,000). 0 means unlimited."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DAY = 86400.0


@dataclass(frozen=True)
class Retention:
    jobs_max_age_s: float = 30 * DAY
    dead_max_age_s: float = 30 * DAY
    dead_max_msgs: int = 100_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Retention:
        return cls(
            float(env.get("AVAFORGE_JOBS_MAX_AGE_S") or cls.jobs_max_age_s),
            float(env.get("AVAFORGE_DEAD_MAX_AGE_S") or cls.dead_max_age_s),
            int(env.get("AVAFORGE_DEAD_MAX_MSGS") or cls.dead_max_msgs),
        )


async def apply(js: Any, stream: str, **limits: Any) -> None:
    """Set ``limits`` on an existing stream (a no-op when they are already set). JetStream refuses a
    duplicate window longer than the max age, so the window shrinks with a short age."""
    info = await js.stream_info(stream)
    config = dataclasses.replace(info.config, **limits)
    if config.max_age and config.duplicate_window and config.duplicate_window > config.max_age:
        config = dataclasses.replace(config, duplicate_window=config.max_age)
    if config != info.config:
        await js.update_stream(config)
