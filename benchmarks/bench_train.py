"""`make bench-train`: seconds per training iteration on this machine's CPU for the tiny and SlowFast R50
presets (mmengine's own per-iteration 'time', first iteration excluded as warm-up)."""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avaforge.cli import main as cli  # noqa: E402
from avaforge.trainer.train import train  # noqa: E402
from tests import media  # noqa: E402


def build_dataset(tmp: Path) -> Path:
    actions = tmp / "actions.yaml"
    actions.write_text("groups:\n  body: [stand, walk]\n")
    inputs = [str(media.make(name, tmp / "videos")) for name in (media.PEOPLE_2997, media.PEOPLE_28)]
    work = tmp / "work"
    assert cli(["prepare", *inputs, "--actions", str(actions), "--out", str(work)]) == 0
    assert cli(["autolabel", str(work)]) == 0
    assert cli(["import", str(work), *map(str, sorted((work / "autolabel").glob("*.via3.json")))]) == 0
    assert cli(["build", str(work), "--out", str(tmp / "dataset")]) == 0
    return tmp / "dataset"


def iteration_times(run: Path) -> list[float]:
    log = "".join(p.read_text() for p in sorted(run.glob("*/*.log")))
    return [float(t) for t in re.findall(r"Iter\(train\) \[\s*\d+/\d+\].*?\btime: ([0-9.]+)", log)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--dataset", help="an avaforge dataset (default: built from two vtest.avi segments, tests/media.py)"
    )
    parser.add_argument("--tiny-iters", type=int, default=12)
    parser.add_argument("--slowfast-iters", type=int, default=4)
    parser.add_argument("--slowfast-batch", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        dataset = Path(args.dataset) if args.dataset else build_dataset(tmp)
        for preset, iters, batch in (
            ("tiny", args.tiny_iters, None),
            ("slowfast_r50", args.slowfast_iters, args.slowfast_batch),
        ):
            run = tmp / preset
            train(dataset, preset, run, iters=iters, batch_size=batch)
            times = iteration_times(run)[1:]
            results[preset] = {
                "batch_size": batch or "preset default",
                "iters_timed": len(times),
                "s_per_iter_median": statistics.median(times),
                "s_per_iter": times,
            }
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
