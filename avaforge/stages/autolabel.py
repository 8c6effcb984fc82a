"""Autolabel: a heuristic pre-labeller that ticks simple actions from track motion.

A person whose box centre moves faster than ``walk_speed`` box heights per second around a keyframe (over
the detected frames within +-0.5 s) is ticked ``walk``, otherwise ``stand``. The result is written into the
clip's VIA project exactly as a person would tick it, so it is useful as pre-ticks for annotators and lets
the demo run without a human; the import marks labels equal to these suggestions as machine-made.
"""

from __future__ import annotations

import numpy as np

from avaforge.formats.actions import ActionList
from avaforge.formats.errors import FormatError
from avaforge.formats.timeline import FPS, keyframe_index
from avaforge.settings import AutolabelSettings
from avaforge.stages.frames import FramesInfo
from avaforge.stages.track import Tracks

Suggestions = dict[tuple[int, int], tuple[int, ...]]


def track_speed(tracks: Tracks, track_id: int, second: int, window_s: float = 0.5) -> float | None:
    """Centre speed in box heights per second around the keyframe; None if seen in fewer than 2 frames."""
    centre = keyframe_index(second)
    lo, hi = centre - window_s * FPS, centre + window_s * FPS
    pts = []
    for frame, boxes in tracks.boxes.items():
        if lo <= frame <= hi:
            for tid, (x1, y1, x2, y2) in zip(boxes.tracked_ids, boxes.xyxy, strict=True):
                if int(tid) == track_id:
                    pts.append((frame, (x1 + x2) / 2, (y1 + y2) / 2, y2 - y1))
    if len(pts) < 2:
        return None
    pts.sort()
    f0, x0, y0, _ = pts[0]
    f1, x1, y1, _ = pts[-1]
    height = float(np.mean([p[3] for p in pts]))
    return float(np.hypot(x1 - x0, y1 - y0) / max(height, 1e-6) / ((f1 - f0) / FPS))


def suggest(
    frames: FramesInfo, tracks: Tracks, actions: ActionList, settings: AutolabelSettings, min_score: float
) -> Suggestions:
    names = actions.by_name()
    missing = [n for n in (settings.walk_action, settings.still_action) if n not in names]
    if missing:
        raise FormatError(
            f"autolabel ticks {settings.walk_action!r}/{settings.still_action!r}, but the action list lacks "
            f"{missing}; set autolabel.walk_action / still_action to actions of your list",
            "autolabel",
        )
    walk, still = names[settings.walk_action].id, names[settings.still_action].id
    out: Suggestions = {}
    for t in frames.labelled_seconds:
        for tid in tracks.at_second(t).with_min_score(min_score).tracked_ids:
            speed = track_speed(tracks, int(tid), t)
            out[(t, int(tid))] = (walk,) if speed is not None and speed > settings.walk_speed else (still,)
    return out
