"""Trainer: generated configs pass mmaction2's own checks; the metric is mmaction2's; a CPU smoke run."""

import json
import math
import os
from pathlib import Path

import pytest

from avaforge.compat.mmaction import register_mmaction
from avaforge.dataset_layout import DatasetLayout
from avaforge.formats.ava_csv import read_rows, write_rows
from avaforge.formats.pbtxt import write_pbtxt
from avaforge.trainer.config import build_config, topk_for, write_config
from avaforge.validation import validate_dataset
from tests.conftest import write_demo_dataset
from tests.reference_data import write_eval_fixture


def _dataset_with_k_actions(root: Path, rawframes: Path, k: int) -> DatasetLayout:
    layout = DatasetLayout(write_demo_dataset(root, rawframes, {"train": ["a"], "val": ["b"]}))
    write_pbtxt(layout.action_list, [(i, f"action {i}") for i in range(1, k + 1)])
    for split in ("train", "val"):
        write_rows(layout.csv(split), [r for r in read_rows(layout.csv(split)) if r.action_id <= k])
    return layout


@pytest.mark.parametrize("k", [1, 3, 7, 80])
def test_generated_config_loads_and_passes_mmaction2_asserts(tmp_path: Path, people_rawframes: Path, k: int):
    from mmengine.config import Config

    layout = _dataset_with_k_actions(tmp_path / "ds", people_rawframes, k)
    path = write_config(
        build_config(layout.root, "tiny", tmp_path / "run", iters=10), tmp_path / "run" / "cfg.py"
    )
    cfg = Config.fromfile(str(path))  # custom_imports: the avaforge plugin
    register_mmaction()
    from mmaction.registry import DATASETS
    from mmdet.registry import MODELS

    head = cfg.model.roi_head.bbox_head
    assert head.num_classes == k + 1 and head.topk == topk_for(k) and all(t <= k for t in head.topk)
    MODELS.build({**head, "_scope_": "mmdet"})  # BBoxHeadAVA asserts topk < num_classes
    assert cfg.train_dataloader.dataset.type == "RepeatDataset"  # no epoch-boundary sleeps in short runs
    for name in ("train", "val"):
        ds = cfg[f"{name}_dataloader"].dataset
        ds = ds.get("dataset", ds)
        # keyframe of second t at frame 30t+1; timestamp_end = the 300-frame (10 s) demo clip's length
        assert (ds.timestamp_start, ds.timestamp_end, ds.fps, ds.start_index) == (0, 10, 30, 1)
        assert ds.filename_tmpl.format(7) == "img_00007.jpg" and "custom_classes" not in ds
        assert len(DATASETS.build(ds)) == 7  # one sample per labelled second 2..8
    assert cfg.load_from is None and cfg.model.init_cfg is None  # offline: no pretrained unless given
    assert cfg.train_dataloader.persistent_workers is False
    assert validate_dataset(layout.root, config=path).ok


def test_subset_of_classes_uses_custom_classes(tmp_path: Path, people_rawframes: Path) -> None:
    from mmengine.config import Config

    layout = _dataset_with_k_actions(tmp_path / "ds", people_rawframes, 3)
    cfg = build_config(
        layout.root,
        "slowfast_r50",
        tmp_path / "run",
        classes=[1, 3],
        workers=2,
        pretrained="/models/slowfast_k400.pth",
    )
    assert cfg.val_dataloader.dataset.custom_classes == [1, 3]
    assert cfg.train_dataloader.dataset.dataset.custom_classes == [1, 3]
    # 2 classes + background; topk_for(2) = (min(3, 2), min(5, 2)) = (2,)
    assert cfg.model.roi_head.bbox_head.num_classes == 3 and cfg.model.roi_head.bbox_head.topk == (2,)
    assert cfg.model.init_cfg == {"type": "Pretrained", "checkpoint": "/models/slowfast_k400.pth"}
    assert cfg.train_dataloader.persistent_workers is True
    path = write_config(cfg, tmp_path / "run" / "cfg.py")
    from mmaction.registry import DATASETS

    assert len(DATASETS.build(Config.fromfile(str(path)).val_dataloader.dataset)) == 7  # seconds 2..8
    assert (
        build_config(layout.root, "tiny", tmp_path / "r", classes=[1, 2, 3]).val_dataloader.dataset.get(
            "custom_classes"
        )
        is None
    )  # all classes: not a subset


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metric_equals_mmaction2_ava_eval(tmp_path: Path, monkeypatch, seed: int) -> None:
    """Per-class evaluation vs mmaction2's own ava_eval on seeded gt/predictions shaped like its test data."""
    from mmaction.evaluation.functional.ava_utils import ava_eval

    from avaforge.trainer.metric import evaluate_csv

    fx = write_eval_fixture(tmp_path / "fx", seed)
    ours = evaluate_csv(str(fx.pred), str(fx.label_map), str(fx.gt), None)
    monkeypatch.chdir(tmp_path)
    theirs = ava_eval(str(fx.pred), "mAP", str(fx.label_map), str(fx.gt), None)
    assert 0 < theirs["overall"] < 1  # jittered and random predictions: neither all found nor none
    assert ours["mAP@0.5IOU"] == pytest.approx(theirs["overall"])
    # gt action = (person + keyframe) % 3 + 1 over 4 keyframes x 4 persons (see write_eval_fixture): 6/5/5
    assert {v["id"]: v["gt_boxes"] for v in ours["per_class"].values()} == {1: 6, 2: 5, 3: 5}
    assert all(v["ap"] is not None for v in ours["per_class"].values())


@pytest.mark.slow
def test_tiny_preset_smoke_train_evaluate_resume_and_demo(tmp_path: Path, tiny_run, videos: Path) -> None:  # type: ignore[no-untyped-def]
    from avaforge.trainer.demo_video import render_demo
    from avaforge.trainer.train import train

    data, run, result = tiny_run  # trained 2 iterations on write_demo_dataset
    layout = DatasetLayout(data)
    assert result.checkpoint.name == "iter_2.pth"
    metrics = json.loads((run / "metrics.json").read_text())
    assert math.isfinite(metrics["val"]["mAP@0.5IOU"])
    assert metrics["val"]["per_class"]["talk"]["gt_boxes"] == 7  # demo_rows: talk (3) once a second, 2..8
    assert not list(Path.cwd().glob("AVA_*_result.csv"))  # nothing written outside the run directory
    resumed = train(layout.root, "tiny", run, iters=4, resume=True)
    assert resumed.checkpoint.name == "iter_4.pth"
    log = "".join(p.read_text() for p in run.glob("*/*.log"))
    assert "Iter(train) [4/4]" in log and "Iter(train) [3/4]" in log
    out = render_demo(
        resumed.checkpoint,
        videos / "people_1080p_vfr_2.6s.mp4",
        tmp_path / "demo.mp4",
        work=tmp_path / "demo_work",
    )
    from avaforge.video.ffmpeg_run import count_frames

    # people_1080p_vfr_2.6s.mp4 rendered at 30 fps: 2.567 s x 30 = 77 frames
    assert out.frames == 77 == count_frames(str(tmp_path / "demo.mp4"), "demo")
    assert os.path.getsize(tmp_path / "demo.mp4") > 10_000
