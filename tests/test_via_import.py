"""VIA export -> annotator edits -> import: ids by label, IoU to tracks, carried-forward new people."""

import json
from pathlib import Path

import numpy as np
import pytest

from avaforge.boxes import Boxes
from avaforge.formats.actions import ActionList
from avaforge.formats.errors import FormatError
from avaforge.formats.via3 import build_project
from avaforge.settings import ImportSettings, ViaSettings
from avaforge.stages.frames import FramesInfo
from avaforge.stages.track import Tracks
from avaforge.stages.via_export import export_via, keyframes_for_via
from avaforge.stages.via_import import import_project

ACTIONS = ActionList.from_obj({"groups": {"body": ["stand", "walk"], "hands": ["wave"]}})
FRAMES = FramesInfo("clip_a", 300, 426, 240, tuple(range(10)), (2, 3, 4, 5, 6, 7, 8))


def _tracks() -> Tracks:
    boxes = {}
    for t in range(10):
        dx = 5 * t
        xyxy = [[20 + dx, 30, 80 + dx, 200], [250, 40, 310, 220], [380, 10, 400, 40]]
        boxes[30 * t + 1] = Boxes(np.array(xyxy), np.array([0.9, 0.8, 0.3]), track_id=np.array([0, 1, 2]))
    return Tracks(boxes)


# pre-fill from score 0.5 (the default is 0.1): the tracks' third box (score 0.3) is one VIA leaves out
VIA = ViaSettings(min_score=0.5)


def _project() -> dict:
    return build_project("clip_a", keyframes_for_via(FRAMES, _tracks(), VIA), ACTIONS)


def _regions(proj: dict, second: int) -> dict[str, dict]:
    vid = str(FRAMES.labelled_seconds.index(second) + 1)
    return {k: v for k, v in proj["metadata"].items() if v["vid"] == vid}


def _import(proj: dict, **kw):
    settings = ImportSettings(**{k: kw.pop(k) for k in list(kw) if k in ("propagate", "match_iou")})
    return import_project(json.dumps(proj).encode(), "done.json", FRAMES, _tracks(), ACTIONS, settings, **kw)


def _tick_all(proj: dict, value: str = "1") -> None:
    for md in proj["metadata"].values():
        md["av"]["2"] = value


def test_export_writes_project_images_guide_and_zip(people_rawframes: Path, tmp_path: Path) -> None:
    import zipfile

    kfs = keyframes_for_via(FRAMES, _tracks(), VIA)
    assert all(len(k.boxes) == 2 for k in kfs)  # the 0.3-score box is below the VIA threshold
    out = export_via(FRAMES, kfs, ACTIONS, people_rawframes, tmp_path)
    names = zipfile.ZipFile(out.archive).namelist()
    assert "clip_a/HOW_TO_LABEL.txt" in names and "clip_a/clip_a.via3.json" in names
    assert sorted(n for n in names if n.endswith(".jpg")) == [
        f"clip_a/clip_a_{t:04d}.jpg" for t in range(2, 9)
    ]
    first = out.archive.read_bytes()
    export_via(FRAMES, kfs, ACTIONS, people_rawframes, tmp_path)
    assert out.archive.read_bytes() == first  # deterministic zip
    assert (out.folder / "clip_a_0002.jpg").read_bytes() == (people_rawframes / "img_00061.jpg").read_bytes()


def test_prefilled_boxes_keep_track_ids_and_actions() -> None:
    proj = _project()
    _tick_all(proj, "1,2")
    labels = _import(proj)
    assert {(b.second, b.person_id, b.actions, b.source) for b in labels.boxes} == {
        (t, p, (1, 2), "human") for t in range(2, 9) for p in (0, 1)
    }
    b = next(b for b in labels.boxes if b.second == 2 and b.person_id == 0)
    # track 0 at second 2 (frame 61): [20 + 5*2, 30, 80 + 5*2, 200] pixels of the 426x240 frame
    assert b.box == pytest.approx((30 / 426, 30 / 240, 90 / 426, 200 / 240))


def test_deleted_redrawn_and_new_people() -> None:
    proj = _project()
    _tick_all(proj)
    # second 3: the annotator deletes person 1, and draws a new person (empty "person" field)
    del proj["metadata"]["2_p1"]
    proj["metadata"]["2_new"] = {"vid": "2", "flg": 0, "z": [], "xy": [2, 150, 50, 40, 100], "av": {"2": "2"}}
    # second 4: the new person moved a little; person 1's box was redrawn with an empty person field
    proj["metadata"]["3_new"] = {"vid": "3", "flg": 0, "z": [], "xy": [2, 155, 52, 40, 100], "av": {"2": "2"}}
    proj["metadata"]["3_p1"]["av"]["1"] = ""
    labels = _import(proj)
    at = {(b.second, b.region): b.person_id for b in labels.boxes}
    assert (3, "2_p1") not in at
    assert at[(3, "2_new")] == at[(4, "3_new")] == 3  # new id after the tracks' 0..2, carried forward by IoU
    assert at[(4, "3_p1")] == 1  # matched to track 1 by IoU
    assert labels.drawn == 1


def test_typed_id_mends_a_switch_and_conflicts_are_errors() -> None:
    proj = _project()
    _tick_all(proj)
    proj["metadata"]["3_p0"]["av"]["1"] = "7"
    assert {b.person_id for b in _import(proj).boxes if b.second == 4} == {7, 1}
    proj["metadata"]["3_p0"]["av"]["1"] = "1"
    with pytest.raises(FormatError, match="person 1 is on two boxes"):
        _import(proj)
    proj["metadata"]["3_p0"]["av"]["1"] = "Alice"
    with pytest.raises(FormatError, match="'Alice' is not a track id"):
        _import(proj)


def test_unticked_boxes_are_reported_or_propagated() -> None:
    proj = _project()
    proj["metadata"]["1_p0"]["av"]["2"] = "2"
    proj["metadata"]["4_p0"]["av"]["3"] = "3"  # second 5: person 0 changes to waving
    labels = _import(proj)
    assert [(b.second, b.person_id) for b in labels.boxes] == [(2, 0), (5, 0)]
    # 7 seconds x 2 boxes (track 2 is below the VIA score threshold) = 14, minus the 2 ticked = 12
    assert len(labels.unlabelled) == 12 and all("done.json: region" in w for w in labels.unlabelled)
    labels = _import(proj, propagate=True)
    person0 = [(b.second, b.actions, b.source) for b in labels.boxes if b.person_id == 0]
    assert person0 == [
        (2, (2,), "human"),
        (3, (2,), "propagated"),
        (4, (2,), "propagated"),
        (5, (3,), "human"),
        (6, (3,), "propagated"),
        (7, (3,), "propagated"),
        (8, (3,), "propagated"),
    ]
    assert len(labels.unlabelled) == 7  # person 1 was never ticked: seconds 2..8


def test_machine_labels_are_marked_until_a_person_changes_them() -> None:
    proj = _project()
    _tick_all(proj)
    machine = {(t, p): (1,) for t in range(2, 9) for p in (0, 1)}
    proj["metadata"]["1_p0"]["av"]["2"] = "2"
    sources = {(b.second, b.person_id): b.source for b in _import(proj, machine=machine).boxes}
    assert sources[(2, 0)] == "human" and sources[(2, 1)] == "machine"


def test_polygon_and_foreign_clip_are_rejected() -> None:
    proj = _project()
    proj["metadata"]["1_p0"]["xy"] = [7, 1, 1, 5, 5, 9, 9]
    with pytest.raises(
        FormatError, match=r"done\.json: region 1_p0 in file clip_a_0002\.jpg: shape is a polygon"
    ):
        _import(proj)
    other = build_project("clip_b", [], ACTIONS)
    with pytest.raises(FormatError, match="project is for clip 'clip_b', expected 'clip_a'"):
        _import(other)
