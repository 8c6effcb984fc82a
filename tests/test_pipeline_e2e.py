"""End to end on two vtest videos through the CLI: prepare -> autolabel -> import -> build -> mmaction2."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from avaforge.cli import main
from avaforge.dataset_layout import DatasetLayout
from avaforge.formats.actions import ActionList
from avaforge.formats.ava_csv import read_rows
from avaforge.formats.proposals import read_proposals
from avaforge.formats.via3 import parse_project
from avaforge.settings import PipelineSettings
from avaforge.stages.frames import FramesInfo
from avaforge.stages.track import Tracks
from avaforge.validation import validate_dataset
from tests.conftest import ava_dataset

pytestmark = pytest.mark.slow
VIDEOS = ("people_29.97fps_10s.mp4", "people_28fps_10s.mp4")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, videos: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e")
    actions = root / "actions.yaml"
    actions.write_text("groups:\n  body: [stand, walk]\n  hands: [wave]\n")
    work, data = root / "work", root / "dataset"
    inputs = [str(videos / v) for v in VIDEOS]
    assert main(["prepare", *inputs, "--actions", str(actions), "--out", str(work)]) == 0
    return {"root": root, "work": work, "data": data, "actions": actions, "inputs": inputs}


def _snapshot(work: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(work)): p.read_bytes()
        for p in sorted(work.rglob("*"))
        if p.is_file() and "rawframes" not in p.parts
    }


def test_prepare_writes_clips_tracks_proposals_and_via(run, capsys) -> None:
    work = run["work"]
    for vid in ("people_29.97fps_10s", "people_28fps_10s"):
        clip = work / "clips" / vid
        assert len(list((clip / "rawframes").iterdir())) == 300
        props = read_proposals(clip / "proposals.pkl")
        assert sorted(props) == [f"{vid},{t:04d}" for t in range(10)]
        finfo = FramesInfo.from_dict(json.loads((clip / "frames.json").read_text()))
        tracks = Tracks.load(clip / "tracks.json")
        parsed = parse_project(
            (work / "via" / vid / f"{vid}.via3.json").read_bytes(),
            where="via",
            video_id=vid,
            actions=ActionList.load(run["actions"]),
            image_size=(finfo.width, finfo.height),
            seconds=finfo.labelled_seconds,
        )
        for t in finfo.labelled_seconds:  # the VIA project round-trips to the tracked boxes and ids
            shown = tracks.at_second(t).with_min_score(PipelineSettings().via.min_score)
            expected = sorted(
                (int(i), *np.round(b, 2)) for i, b in zip(shown.tracked_ids, shown.xyxy, strict=True)
            )
            got = sorted((int(r.person), *np.round(r.box, 2)) for r in parsed.regions if r.second == t)
            assert [g[0] for g in got] == [e[0] for e in expected]
            np.testing.assert_allclose([g[1:] for g in got], [e[1:] for e in expected], atol=0.011)
        assert (work / "via" / f"{vid}.zip").exists()


def test_rerun_reuses_every_stage_and_is_byte_identical(run, capsys) -> None:
    before = _snapshot(run["work"])
    assert main(["prepare", *run["inputs"], "--actions", str(run["actions"]), "--out", str(run["work"])]) == 0
    # 2 clips x the 5 automatic stages of avaforge.pipeline (ingest, detect, track, proposals, via)
    assert "10 finished stages reused" in capsys.readouterr().out
    assert _snapshot(run["work"]) == before


def test_bad_video_fails_clearly_and_damages_nothing(run, capsys) -> None:
    before = _snapshot(run["work"])
    bad = run["root"] / "broken.mp4"
    bad.write_text("not a video")
    code = main(
        ["prepare", run["inputs"][0], str(bad), "--actions", str(run["actions"]), "--out", str(run["work"])]
    )
    assert code == 2
    assert f"{bad}: not a readable video" in capsys.readouterr().err
    assert _snapshot(run["work"]) == before


def test_autolabel_import_build_gives_a_valid_dataset_mmaction2_loads(run, capsys) -> None:
    work, data = run["work"], run["data"]
    assert main(["autolabel", str(work)]) == 0
    projects = sorted(str(p) for p in (work / "autolabel").glob("*.via3.json"))
    assert main(["import", str(work), *projects]) == 0
    assert main(["build", str(work), "--out", str(data)]) == 0
    out = capsys.readouterr().out
    assert "OK: 0 errors" in out
    layout = DatasetLayout(data)
    train, val = read_rows(layout.csv("train")), read_rows(layout.csv("val"))
    assert train and val and not ({r.video_id for r in train} & {r.video_id for r in val})  # split by video
    assert {r.action_id for r in train + val} <= {1, 2}  # autolabel ticks stand / walk
    assert validate_dataset(data).ok
    report = data / "report"
    assert (report / "index.html").exists() and len(list(report.glob("*.png"))) == 5  # 4 + detector_boxes.png
    assert "machine-made" in (report / "index.html").read_text()

    ds = ava_dataset(layout, "val", person_det_score_thr=0.5)
    sample = ds[0]
    assert len(sample["imgs"]) == 32 and sample["proposals"].shape[1] == 4
    assert not np.array_equal(
        sample["proposals"], [[0, 0, sample["imgs"][0].shape[1], sample["imgs"][0].shape[0]]]
    )


def test_failed_build_keeps_the_previous_dataset(run, capsys) -> None:
    data = run["data"]
    before = (data / "annotations" / "train.csv").read_bytes()
    labels = run["work"] / "labels"
    saved = run["root"] / "labels_saved"
    shutil.copytree(labels, saved)
    try:
        for p in sorted(labels.glob("*.json"))[1:]:
            p.unlink()
        assert main(["build", str(run["work"]), "--out", str(data)]) == 2
        assert "cannot make both a train and a val split" in capsys.readouterr().err
        assert (data / "annotations" / "train.csv").read_bytes() == before
    finally:
        shutil.rmtree(labels)
        shutil.copytree(saved, labels)


def test_import_rejects_a_project_for_another_clip(run, tmp_path: Path, capsys) -> None:
    proj = json.loads(next((run["work"] / "autolabel").glob("*.via3.json")).read_text())
    proj["project"]["pname"] = "some_other_clip"
    path = tmp_path / "other.json"
    path.write_text(json.dumps(proj))
    assert main(["import", str(run["work"]), str(path)]) == 2
    assert (
        "project is for clip 'some_other_clip', which is not in this work folder" in capsys.readouterr().err
    )
