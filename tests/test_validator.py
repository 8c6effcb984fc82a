import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from avaforge.cli import main
from avaforge.dataset_layout import DatasetLayout
from avaforge.validation import validate_dataset
from tests.conftest import write_demo_dataset
from tests.reference_data import write_seed_outputs


@pytest.fixture
def clean(tmp_path: Path, people_rawframes: Path) -> DatasetLayout:
    return DatasetLayout(
        write_demo_dataset(tmp_path / "ds", people_rawframes, {"train": ["a"], "val": ["b"]})
    )


def _codes(layout: DatasetLayout, **kw) -> dict[str, int]:
    return dict(validate_dataset(layout.root, **kw).codes())


def test_clean_dataset_passes(clean: DatasetLayout) -> None:
    report = validate_dataset(clean.root)
    assert report.problems == []
    assert report.ok
    # conftest.demo_rows: seconds 2..8 (7 keyframes), 2 boxes each, the first with actions 1 and 3, the
    # second with action 2: 3 rows a second
    assert report.summary["splits"]["train"] == {
        "rows": 21,
        "boxes": 14,
        "keyframes": 7,
        "videos": 1,
        "actions": {1: 7, 2: 7, 3: 7},
    }


def test_seed_outputs_report_the_seeds_defects(tmp_path: Path) -> None:
    seed = write_seed_outputs(tmp_path / "seed_outputs")
    ann = tmp_path / "seed" / "annotations"
    ann.mkdir(parents=True)
    for name in ("train.csv", "action_list.pbtxt", "included_timestamps.txt"):
        shutil.copy(seed / name, ann / name)
    for root in (tmp_path / "seed", seed):  # arranged as a dataset, and the folder as the seed left it
        report = validate_dataset(root)
        codes = report.codes()
        assert not report.ok
        assert codes["duplicate-person-id"] == 9  # SEED_PATCHED: 9 patched boxes, each on a distinct id
        assert codes["pbtxt-empty"] == 1  # the seed's action_list.pbtxt is an empty file
        assert codes["proposals-missing"] == 1 and codes["rawframes-missing"] == 3  # videos 1, 2, 3
        assert codes["box-precision"] == 1  # one warning for the file: every corner has >= 7 decimals
        assert codes["csv-missing"] == 1  # no val split
        assert "bad-person-id" not in codes and "box-several-ids" not in codes
        dup = [p for p in report.problems if p.code == "duplicate-person-id"]
        # first in (video, second, id) order: video 1, second 4, the first person tracked there, whose id is
        # 3 persons x 2 earlier seconds (2, 3) = 6
        assert "person id 6 has 2 different boxes at second 4" in dup[0].message


def test_seed_csv_before_its_id_patch_and_its_string_proposals(tmp_path: Path) -> None:
    seed = write_seed_outputs(tmp_path / "seed", patched=False, string_score_proposals=True)
    codes = validate_dataset(seed).codes()
    assert codes["bad-person-id"] == 9  # the 9 unmatched boxes of SEED_PATCHED keep -1, one action row each
    # -1 then sits on 2 or 3 boxes at seconds 4, 5 and 6 of video 1 (on one box at 7 and 8)
    assert codes["duplicate-person-id"] == 3
    # 3 videos x 7 seconds, every array holds strings; a broken key is not checked further
    assert codes["proposal-dtype"] == 21 and "proposals-missing" not in codes


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (
            lambda t: t.replace("0.550,0.150,0.850,0.950,2,1", "0.550,0.150,0.850,0.950,2,-1", 1),
            "bad-person-id",
        ),
        (
            lambda t: t.replace("0.100,0.200,0.400,0.900,1,0", "0.100,0.200,1.400,0.900,1,0", 1),
            "box-out-of-range",
        ),
        (
            lambda t: t.replace("0.100,0.200,0.400,0.900,1,0", "0.500,0.200,0.400,0.900,1,0", 1),
            "box-inverted",
        ),
        (lambda t: t.replace(",2,1\n", ",7,1\n", 1), "unknown-action"),
        (lambda t: t.replace("a,0003,0.100,0.200", "a,0003,0.110,0.200", 1), "duplicate-person-id"),
        (lambda t: t.replace("\n", "\n\n", 1), "blank-line"),
        (lambda t: t[:-10], "field-count"),
        (
            lambda t: t.replace("0.550,0.150,0.850,0.950,2,1", "0.100,0.200,0.400,0.900,2,1", 1),
            "box-several-ids",
        ),
    ],
)
def test_csv_defects(clean: DatasetLayout, edit, code: str) -> None:
    path = clean.csv("train")
    path.write_text(edit(path.read_text()))
    codes = _codes(clean)
    assert code in codes, codes


def _edit_proposals(layout: DatasetLayout, fn) -> None:
    path = layout.proposals("val")
    props = pickle.loads(path.read_bytes())
    fn(props)
    path.write_bytes(pickle.dumps(props))


@pytest.mark.parametrize(
    ("fn", "code"),
    [
        (lambda p: p.pop("b,0004"), "proposal-missing-key"),
        (lambda p: p.update({"b,0004": np.zeros((0, 5))}), "proposal-empty-labelled"),
        (lambda p: p.update({"b,0009": np.zeros((0,))}), "proposal-shape"),
        (lambda p: p.update({"b,0004": p["b,0004"].astype(str)}), "proposal-dtype"),
        (lambda p: p.update({"b,0004": p["b,0004"] * 2}), "proposal-range"),
        (lambda p: p.update({"b,0004": p["b,0004"][2:]}), "gt-not-proposed"),
    ],
)
def test_proposal_defects(clean: DatasetLayout, fn, code: str) -> None:
    _edit_proposals(clean, fn)
    assert code in _codes(clean)


def test_missing_rawframe_in_window_and_split_leak(clean: DatasetLayout, people_rawframes: Path) -> None:
    frames = clean.frame_dir("b")
    frames.unlink()
    frames.mkdir()
    for f in people_rawframes.iterdir():
        if f.name != "img_00272.jpg":  # inside the window of second 8 (240..272)
            (frames / f.name).symlink_to(f)
    report = validate_dataset(clean.root)
    window = [p for p in report.problems if p.code == "rawframes-window"]
    assert len(window) == 1 and "second 8" in window[0].message and "img_00272.jpg" in window[0].message
    shutil.copy(clean.csv("train"), clean.csv("val"))  # the seed's "val = train"
    assert "split-leak" in _codes(clean)


SEED_LIKE_CONFIG = """
model = dict(type='FastRCNN', roi_head=dict(type='AVARoIHead', bbox_head=dict(
    type='BBoxHeadAVA', in_channels=2304, num_classes={num_classes}, multilabel=True, topk={topk})))
val_pipeline = [dict(type='SampleAVAFrames', clip_len=32, frame_interval=2, test_mode=True)]
_ds = dict(type='AVADataset', ann_file='{ann}', label_file='{label}', proposal_file='{props}',
           data_prefix=dict(img='{frames}'), start_index=1, timestamp_start={ts0}, timestamp_end={ts1})
train_dataloader = dict(batch_size=1, dataset=_ds)
val_dataloader = dict(batch_size=1, dataset=dict(_ds, test_mode=True))
"""


def _config(layout: DatasetLayout, tmp_path: Path, **kw) -> Path:
    values = dict(
        num_classes=4,
        topk=(1, 3),
        ts0=0,
        ts1=10,
        ann=layout.csv("train"),
        label=layout.action_list,
        props=layout.proposals("train"),
        frames=layout.rawframes,
    )
    values.update(kw)
    path = tmp_path / "cfg.py"
    path.write_text(SEED_LIKE_CONFIG.format(**values))
    return path


def test_config_checks(clean: DatasetLayout, tmp_path: Path) -> None:
    assert validate_dataset(clean.root, config=_config(clean, tmp_path)).ok
    codes = _codes(clean, config=_config(clean, tmp_path, num_classes=81, topk=(3, 5), ts0=900, ts1=1800))
    assert {"config-num-classes", "config-topk", "config-timestamp-start"} <= set(codes)
    # timestamp_end shorter than the clip: mmaction2 clamps the window, the frames it needs are then wrong
    assert "config-num-classes" in _codes(clean, config=_config(clean, tmp_path, num_classes=3))
    bad = tmp_path / "broken.py"
    bad.write_text("model = dict(\n")
    assert "config-unreadable" in _codes(clean, config=bad)


def test_cli_exit_codes_and_json(clean: DatasetLayout, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["validate", str(clean.root)]) == 0
    assert "OK: 0 errors, 0 warnings" in capsys.readouterr().out
    assert main(["validate", str(write_seed_outputs(tmp_path / "seed")), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    # the seed's errors: 9 duplicate-person-id + pbtxt-empty + proposals-missing + 3 rawframes-missing
    # + csv-missing (val) = 15 (box-precision and the missing excluded file are warnings)
    assert out["ok"] is False and out["errors"] == 15
    assert {"severity", "code", "message", "where"} == set(out["problems"][0])
