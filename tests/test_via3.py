import json

import pytest

from avaforge.formats.actions import ActionList
from avaforge.formats.errors import FormatError
from avaforge.formats.via3 import (
    ViaBox,
    ViaKeyframe,
    build_project,
    dumps_project,
    keyframe_image_name,
    load_project_json,
    parse_project,
)
from tests.reference_data import via3_project_as_saved_by_via

ACTIONS = ActionList.from_obj(
    {"groups": {"body": ["stand", "sit", "walk"], "head": ["talk"], "limbs": ["hand up"]}}
)
SIZE = (426, 240)
VIDEO = "basket_ball.v2"


def _keyframes() -> list[ViaKeyframe]:
    return [
        ViaKeyframe(2, (ViaBox(10, 20, 110, 220, track_id=0), ViaBox(200.25, 30, 300, 239.5, track_id=1))),
        ViaKeyframe(3, (ViaBox(12, 20, 112, 220, track_id=0),)),
        ViaKeyframe(4, ()),
    ]


def _project() -> dict:
    return build_project(VIDEO, _keyframes(), ACTIONS)


def _parse(obj_or_bytes, **kw):
    kw.setdefault("seconds", [2, 3, 4])
    return parse_project(
        obj_or_bytes, where="finished.json", actions=ACTIONS, video_id=VIDEO, image_size=SIZE, **kw
    )


def test_build_is_deterministic_and_has_no_default_ticks() -> None:
    a, b = (
        dumps_project(_project()),
        dumps_project(build_project(VIDEO, list(reversed(_keyframes())), ACTIONS)),
    )
    assert a == b
    proj = json.loads(a)
    assert all(attr["default_option_id"] == "" for attr in proj["attribute"].values())
    checkbox_aids = {aid for aid, attr in proj["attribute"].items() if attr["type"] == 2}
    assert len(checkbox_aids) == 3  # one checkbox attribute per action group: body, head, limbs
    assert all(not (set(md["av"]) & checkbox_aids) for md in proj["metadata"].values())
    assert proj["attribute"]["2"]["options"] == {"1": "stand", "2": "sit", "3": "walk"}
    label_aid = proj["config"]["ui"]["spatial_region_label_attribute_id"]
    assert proj["attribute"][label_aid]["aname"] == "person"
    # xy = [2 (rectangle), x1, y1, x2 - x1, y2 - y1] of ViaBox(200.25, 30, 300, 239.5)
    assert proj["metadata"]["1_p1"] == {
        "vid": "1",
        "flg": 0,
        "z": [],
        "xy": [2, 200.25, 30.0, 99.75, 209.5],
        "av": {label_aid: "1"},
    }
    assert proj["file"]["1"]["fname"] == keyframe_image_name(VIDEO, 2) == "basket_ball.v2_0002.jpg"
    assert proj["project"]["vid_list"] == ["1", "2", "3"]  # one view per keyframe: seconds 2, 3, 4


def test_layout_matches_a_project_saved_by_via() -> None:
    saved = load_project_json(json.dumps(via3_project_as_saved_by_via()).encode(), "ref")
    ours = _project()
    assert set(ours) == set(saved)
    assert set(ours["project"]) == set(saved["project"])
    assert set(ours["config"]["ui"]) <= set(saved["config"]["ui"])
    for attr in ours["attribute"].values():
        assert set(attr) == set(next(iter(saved["attribute"].values())))


def test_round_trip_same_boxes_and_tracks() -> None:
    parsed = _parse(dumps_project(_project()))
    assert parsed.seconds == [2, 3, 4]
    got = [(r.second, r.person, r.box) for r in parsed.regions]
    assert got == [
        (2, "0", (10, 20, 110, 220)),
        (2, "1", (200.25, 30, 300, 239.5)),
        (3, "0", (12, 20, 112, 220)),
    ]
    assert len(parsed.unlabelled) == 3  # nothing ticked yet: every box is reported


def test_pretty_json_multi_ticks_and_view_id_not_file_id() -> None:
    proj = _project()
    # Re-key views so view id != file id and the first view shows the second file (as VIA may save it).
    proj["view"] = {"7": {"fid_list": ["2"]}, "8": {"fid_list": [1]}, "9": {"fid_list": [3]}}
    proj["project"]["vid_list"] = ["7", "8", "9"]
    for md in proj["metadata"].values():
        md["vid"] = {"1": "8", "2": "7", "3": "9"}[md["vid"]]
    proj["metadata"]["1_p0"]["av"].update({"2": "1,3", "3": "4"})  # stand + walk, talk
    proj["metadata"]["1_p1"]["av"]["4"] = ""
    parsed = _parse(json.dumps(proj, indent=2).encode())
    by_id = {r.region_id: r for r in parsed.regions}
    assert by_id["1_p0"].second == 2 and by_id["1_p0"].actions == (1, 3, 4)
    assert by_id["2_p0"].second == 3
    assert {r.region_id for r in parsed.unlabelled} == {"1_p1", "2_p0"}


def test_annotator_drawn_box_without_person() -> None:
    proj = _project()
    proj["metadata"]["1_new"] = {"vid": "1", "flg": 0, "z": [], "xy": [2, 50, 50, 20, 40], "av": {"2": "2"}}
    region = next(r for r in _parse(proj).regions if r.region_id == "1_new")
    assert region.person is None and region.actions == (2,)
    assert region.normalised(*SIZE) == pytest.approx((50 / 426, 50 / 240, 70 / 426, 90 / 240))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p["metadata"]["1_p0"].update(xy=[7, 1, 1, 5, 5, 9, 9]), "polygon, only rectangles"),
        (lambda p: p["metadata"]["1_p0"].update(xy=[], z=[1.5, 2.0]), "temporal segment"),
        (lambda p: p["metadata"]["1_p0"]["av"].update({"2": "1,9"}), "option id '9'"),
        # the seed's default tick: its tool turns default_option_id "" into "0", so new boxes arrive with "0";
        # our option ids are the action ids 1..K, so such a tick is never read as an action
        (lambda p: p["metadata"]["1_p0"]["av"].update({"2": "0"}), "option id '0'"),
        (lambda p: p["metadata"]["1_p0"]["av"].update({"99": "x"}), "attribute id '99'"),
        (lambda p: p["metadata"]["1_p0"].update(xy=[2, 400, 10, 100, 50]), "outside the 426x240 image"),
        (lambda p: p["metadata"]["1_p0"].update(vid="42"), "view '42' does not exist"),
    ],
)
def test_bad_regions_name_region_and_file(mutate, message: str) -> None:
    proj = _project()
    mutate(proj)
    with pytest.raises(FormatError, match=message) as exc:
        _parse(proj)
    assert "finished.json: region 1_p0" in str(exc.value)
    if "view" not in message:
        assert "basket_ball.v2_0002.jpg" in str(exc.value)


def test_missing_file_other_clip_and_foreign_attribute() -> None:
    proj = _project()
    del proj["file"]["2"]
    with pytest.raises(FormatError, match="view 2: file 2 is missing"):
        _parse(proj)
    with pytest.raises(FormatError, match="project is for clip 'other', expected"):
        _parse(build_project("other", _keyframes(), ACTIONS))
    proj = _project()
    proj["file"]["1"]["fname"] = "other_0002.jpg"
    with pytest.raises(FormatError, match="not a keyframe image of clip"):
        _parse(proj)
    with pytest.raises(FormatError, match="second 9 is not a keyframe"):
        _parse(build_project(VIDEO, [ViaKeyframe(9)], ACTIONS))
    proj = _project()
    proj["attribute"]["2"]["options"]["1"] = "standing"  # option renamed in VIA: no longer our action
    proj["metadata"]["1_p0"]["av"]["2"] = "1"
    with pytest.raises(FormatError, match="not one of the action groups"):
        _parse(proj)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "JSON list"),
        (b'{"project": {}', "not JSON"),
        (b'{"_via_settings": {}, "_via_img_metadata": {}}', "VIA 2 project"),
        (b'{"project": {}, "file": {}}', "missing keys"),
        (
            b'{"project": {}, "config": {}, "attribute": [], "file": {}, "view": {}, "metadata": {}}',
            "'attribute'",
        ),
    ],
)
def test_bad_files_are_clear_errors(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message) as exc:
        _parse(data)
    assert str(exc.value).startswith("finished.json")


def test_prefilled_ticks_from_autolabel_round_trip() -> None:
    kfs = [ViaKeyframe(2, (ViaBox(10, 20, 110, 220, track_id=3, actions=(3, 1, 5)),))]
    proj = build_project(VIDEO, kfs, ACTIONS)
    # "1" person = track 3; body (aid 2) = stand 1 + walk 3; limbs (aid 4) = hand up 5; head (aid 3) unticked
    assert proj["metadata"]["1_p3"]["av"] == {"1": "3", "2": "1,3", "4": "5"}
    assert _parse(proj).regions[0].actions == (1, 3, 5)
