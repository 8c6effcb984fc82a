"""The detect stage of ``avaforge prepare`` on real clips: today's configuration and the default, one process.

``bench_detect.py`` prices the detector per frame on the hand-labelled frames; this runs the whole stage
as the embedded runner does (``steps.detect_plan``: the probe and the clip's plan, then
``steps.detect_frames`` on every frame the stage detects) over every clip of a prepared work folder, e.g.
``make demo``'s eight 10 s windows of vtest.avi or ``avaforge prepare vtest.avi``'s one whole clip.
Configurations, run in turn ``--repeat`` times so that a change in the machine's speed hits them alike:

  today    the detect stage before issue 14: fp32 model, 640 px, no probe (``auto_size`` off)
  default  the default detect settings (avaforge/settings.py: int8, input size from the probe); the work
           folder gives only its clips' rawframes
  M        the default with ``min_person_px`` M (``--min-person-px``, several allowed)

Prints, per configuration and run, CPU seconds (the work; wall time on a shared 2-core machine swings) and
wall seconds, each against today's of the same run, and the plans chosen.
Usage: ``bench_detect_stage.py WORKDIR [--repeat 2] [--min-person-px 80 ...] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from avaforge import steps
from avaforge.detection import make_detector
from avaforge.settings import PipelineSettings
from avaforge.stages.frames import FramesInfo
from avaforge.workdir import Workdir


def configurations(prepared: PipelineSettings, ms: list[float]) -> dict[str, PipelineSettings]:
    base = replace(prepared, detect=PipelineSettings().detect)
    today = replace(base.detect, precision="fp32", imgsz=640, auto_size=False)
    out = {"today": replace(base, detect=today), "default": base}
    for m in ms:
        out[f"M{m:g}"] = replace(base, detect=replace(base.detect, min_person_px=m))
    return out


def run_stage(wd: Workdir, s: PipelineSettings) -> dict:
    detector = make_detector(s.detect)
    cpu, wall = time.process_time(), time.perf_counter()
    plans, frames = [], 0
    for cid in wd.clip_ids():
        clip = wd.clip(cid)
        finfo = FramesInfo.from_dict(json.loads(clip.frames_json.read_text()))
        todo = steps.frames_to_detect(finfo, s)
        plan = steps.detect_plan(clip.rawframes, detector, s)
        steps.detect_frames(clip.rawframes, todo, detector, s, plan=plan)
        plans.append(plan)
        frames += len(todo)
    return {
        "cpu_s": round(time.process_time() - cpu, 1),
        "wall_s": round(time.perf_counter() - wall, 1),
        "frames": frames,
        "plans": plans,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--min-person-px", type=float, nargs="*", default=[])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    wd = Workdir(args.workdir)
    configs = configurations(wd.settings(), args.min_person_px)
    rows = []
    for run in range(1, args.repeat + 1):
        results = {name: run_stage(wd, s) for name, s in configs.items()}
        today = results["today"]
        for name, r in results.items():
            r |= {"run": run, "config": name}
            r["cpu_x_today"] = round(r["cpu_s"] / today["cpu_s"], 2)
            r["wall_x_today"] = round(r["wall_s"] / today["wall_s"], 2)
            rows.append(r)
            print(
                f"run {run} {name:<8} {r['frames']} frames: "
                f"CPU {r['cpu_s']:7.1f} s ({r['cpu_x_today']:.2f}x today)  "
                f"wall {r['wall_s']:6.1f} s ({r['wall_x_today']:.2f}x)  plans {' '.join(r['plans'])}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
