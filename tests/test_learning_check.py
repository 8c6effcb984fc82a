"""Learning check: the tiny model overfits its training keyframes, so labels, boxes and frames line up.

Dataset: two multi-person vtest videos (tests/media.py) through the whole pipeline with autolabel (walk/stand
from motion). The untrained model (learning rate 0) and the trained one are scored with mmaction2's AVA
frame-mAP@0.5 on the training split; "mAP 0" (the failure users hit most when boxes, timestamps or frames are
misaligned) would show up here as no gain. `make learning-check` runs only this test.
"""

from pathlib import Path

import pytest

from avaforge.cli import main
from avaforge.trainer.train import train

pytestmark = pytest.mark.slow
ITERS = 150


def test_tiny_model_overfits_training_keyframes(tmp_path: Path, videos: Path, capsys) -> None:
    actions = tmp_path / "actions.yaml"
    actions.write_text("groups:\n  body: [stand, walk]\n")
    work, data = tmp_path / "work", tmp_path / "dataset"
    inputs = [
        str(videos / "people_29.97fps_10s.mp4"),
        str(videos / "people_28fps_10s.mp4"),
    ]
    # The boxes this check was calibrated on (the detector defaults before the recall work, issue 14: conf
    # 0.25, VIA pre-fill from 0.5). It checks that labels, boxes and frames line up; with the new defaults
    # (0.1 / 0.1) autolabel labels more, weaker boxes and the same 150 iterations reached 0.880 (CI,
    # 2026-11-30), with these 0.984 as before.
    settings = tmp_path / "settings.yaml"
    settings.write_text("detect:\n  conf: 0.25\nvia:\n  min_score: 0.5\n")
    assert (
        main(["prepare", *inputs, "--actions", str(actions), "--out", str(work), "--settings", str(settings)])
        == 0
    )
    assert main(["autolabel", str(work)]) == 0
    assert main(["import", str(work), *map(str, (work / "autolabel").glob("*.via3.json"))]) == 0
    assert main(["build", str(work), "--out", str(data)]) == 0
    untrained = train(data, "tiny", tmp_path / "untrained", iters=1, lr=0.0, eval_train=True)
    trained = train(data, "tiny", tmp_path / "trained", iters=ITERS, lr=2e-3, eval_train=True)
    before = untrained.metrics["train"]["mAP@0.5IOU"]
    after = trained.metrics["train"]["mAP@0.5IOU"]
    with capsys.disabled():
        print(f"\nlearning check: train-split mAP {before:.3f} untrained -> {after:.3f} after {ITERS} iters")
    # Measured on these videos: 0.767 untrained -> 0.984 after 150 iterations with the fp32 detector at 640
    # px; with the int8 default and its size rule (min_person_px 80) 0.670 -> 0.952 (2026-11-30, loaded
    # 2-core machine) (most people walk, so the untrained model already scores high on "walk"); a gain of
    # 0.15 still needs aligned boxes and frames.
    assert after >= before + 0.15, (before, after)
