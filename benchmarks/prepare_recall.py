"""How many of the hand-labelled people a prepared work folder pre-boxes: the tracked boxes VIA would show
(score >= via.min_score) on the labelled frames of vtest.avi, matched at IoU 0.5.

Usage: ``prepare_recall.py WORKDIR`` after ``avaforge prepare vtest.avi --out WORKDIR`` (one clip or several,
e.g. ``make demo``'s 10 s windows: each labelled frame is looked up in the clip that holds it). The labelled
frames are every 26th, not keyframes; every source frame of the 10 fps video is detected and tracked at the
default rate (rawframe 3k+1 of a clip from ``start_s`` = source frame k + 10 ``start_s``), so the tracks there
are what VIA would pre-fill had that frame been a keyframe.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from avaforge.settings import PipelineSettings
from avaforge.stages.track import Tracks
from avaforge.tracking.metrics import hungarian
from avaforge.workdir import Workdir

LABELS = Path(__file__).resolve().parent / "detect_labels" / "vtest.json"


def main() -> None:
    wd = Workdir(Path(sys.argv[1]))
    settings: PipelineSettings = wd.settings()
    clips = [(json.loads(wd.clip(cid).clip_json.read_text()), cid) for cid in wd.clip_ids()]
    tracks = {cid: Tracks.load(wd.clip(cid).tracks) for _, cid in clips}
    labels = json.loads(LABELS.read_text())["frames"]
    clear = found = boxes = frames = 0
    for frame, rows in sorted(labels.items(), key=lambda kv: int(kv[0])):
        t = int(frame) / 10  # vtest.avi runs at 10 fps
        held = [(c, cid) for c, cid in clips if c["start_s"] <= t < c["start_s"] + c["length_s"]]
        if not held:
            continue
        clip, cid = held[0]
        raw = 3 * (int(frame) - round(10 * clip["start_s"])) + 1
        if raw not in tracks[cid].boxes:
            continue
        shown = tracks[cid].boxes[raw].with_min_score(settings.via.min_score).xyxy
        gt = np.array([r[:4] for r in rows], dtype=np.float64).reshape(-1, 4)
        pairs = hungarian(shown, gt, 0.5)
        tags = [rows[g][4] for _, g in pairs]
        clear += sum(r[4] == "clear" for r in rows)
        found += tags.count("clear")
        boxes += len(shown) - tags.count("hard") - tags.count("ignore")
        frames += 1
    print(
        f"{len(clips)} clip(s): {frames} labelled frames, {found}/{clear} clear people pre-boxed "
        f"(recall {found / max(clear, 1):.3f}), precision {found / max(boxes, 1):.3f} "
        f"(via.min_score {settings.via.min_score:g})"
    )


if __name__ == "__main__":
    main()
