"""Exclusive action groups (AVA's pose: exactly one per labelled box): the YAML form, VIA 3 radio attributes,
the import's check naming the region, and `avaforge validate` on a built dataset."""

import json
from pathlib import Path

import numpy as np
import pytest

from avaforge.boxes import Boxes
from avaforge.cli import main
from avaforge.dataset_layout import DatasetLayout
from avaforge.formats.actions import ActionList
from avaforge.formats.ava_csv import AvaRow, read_rows, write_rows
from avaforge.formats.errors import FormatError
from avaforge.formats.via3 import ATTR_CHECKBOX, ATTR_RADIO, ViaBox, ViaKeyframe, build_project, parse_project
from avaforge.provenance import PROVENANCE_FILE
from avaforge.settings import ImportSettings
from avaforge.stages.frames import FramesInfo
from avaforge.stages.track import Tracks
from avaforge.stages.via_import import import_project
from avaforge.validation import validate_dataset
from tests.conftest import write_demo_dataset

YAML = "groups:\n  body: {exclusive: true, actions: [stand, walk]}\n  social: [talk]\n"
ACTIONS = ActionList.from_obj(
    {"groups": {"body": {"exclusive": True, "actions": ["stand", "walk"]}, "social": ["talk"]}}
)


def test_yaml_exclusive_group_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "actions.yaml"
    path.write_text(YAML)
    actions = ActionList.load(path)
    assert [(g.name, g.exclusive, [a.id for a in g.actions]) for g in actions.groups] == [
        ("body", True, [1, 2]),
        ("social", False, [3]),
    ]
    assert actions == ACTIONS
    # a multi-select group keeps the plain list form, so existing manifests and cache keys keep their bytes
    assert actions.to_dict()["groups"]["social"] == [{"name": "talk", "id": 3}]
    assert ActionList.from_obj(actions.to_dict()) == actions
    flat = ActionList.from_obj({"groups": {"body": ["stand"]}})
    assert not flat.groups[0].exclusive and flat.to_dict() == {
        "groups": {"body": [{"name": "stand", "id": 1}]}
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("groups: {body: {exclusive: yes please, actions: [a]}}", "'exclusive' must be true or false"),
        ("groups: {body: {exclusive: true}}", "needs an 'actions' list"),
        ("groups: {body: {exclusive: true, actions: []}}", "non-empty list"),
        ("groups: {body: {exclusive: true, actions: [a], single: 1}}", r"unknown keys \['single'\]"),
    ],
)
def test_group_form_errors_name_file_and_group(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(text)
    with pytest.raises(FormatError, match=message) as err:
        ActionList.load(path)
    assert err.value.where == f"{path}: group 'body'"


def test_exclusive_violations() -> None:
    assert ACTIONS.exclusive_violations([1, 3]) == []
    assert ACTIONS.exclusive_violations([1, 2]) == [
        "group 'body' needs exactly one action, got 2 (stand, walk)"
    ]
    assert ACTIONS.exclusive_violations([3]) == ["group 'body' needs exactly one action, got none"]


def test_via3_exclusive_group_is_a_radio_attribute_and_reads_back() -> None:
    kf = ViaKeyframe(2, (ViaBox(10, 10, 60, 100, track_id=0, actions=(2, 3)),))
    proj = build_project("clip_a", [kf], ACTIONS)
    assert [a["type"] for a in proj["attribute"].values()] == [1, ATTR_RADIO, ATTR_CHECKBOX]
    assert proj["metadata"]["1_p0"]["av"] == {"1": "0", "2": "2", "3": "3"}
    parsed = parse_project(proj, where="p.json", actions=ACTIONS, video_id="clip_a", image_size=(426, 240))
    assert [r.actions for r in parsed.regions] == [(2, 3)]
    with pytest.raises(FormatError, match=r"actions \['1', '2'\] ticked in the exclusive group 'body'"):
        build_project("clip_a", [ViaKeyframe(2, (ViaBox(10, 10, 60, 100, 0, (1, 2)),))], ACTIONS)


def _import(av: dict[str, str]) -> list[tuple[int, tuple[int, ...]]]:
    frames = FramesInfo("clip_a", 300, 426, 240, tuple(range(10)), (2, 3))
    tracks = Tracks({61: Boxes(np.array([[20, 30, 80, 200]]), np.array([0.9]), track_id=np.array([0]))})
    proj = build_project("clip_a", [ViaKeyframe(2, (ViaBox(20, 30, 80, 200, 0),))], ACTIONS)
    proj["metadata"]["1_p0"]["av"].update(av)
    labels = import_project(json.dumps(proj).encode(), "done.json", frames, tracks, ACTIONS, ImportSettings())
    return [(b.person_id, b.actions) for b in labels.boxes]


def test_import_requires_one_pose_per_labelled_box() -> None:
    assert _import({"2": "1", "3": "3"}) == [(0, (1, 3))]
    assert _import({}) == []  # unticked: reported as unlabelled, not an error
    # VIA's radio UI cannot tick two, but an edited file can: the error names the region
    with pytest.raises(FormatError, match="got 2 \\(stand, walk\\)") as err:
        _import({"2": "1,2"})
    assert err.value.where == "done.json: region 1_p0 in file clip_a_0002.jpg"
    with pytest.raises(FormatError, match="group 'body' needs exactly one action, got none"):
        _import({"3": "3"})


def test_validate_checks_exclusive_groups_from_provenance(tmp_path: Path, people_rawframes: Path) -> None:
    layout = DatasetLayout(
        write_demo_dataset(tmp_path / "ds", people_rawframes, {"train": ["a"], "val": ["b"]})
    )
    # conftest.demo_rows: person 0 does stand (1) + talk (3), person 1 walk (2): one pose each
    assert validate_dataset(layout.root, actions=ACTIONS).ok
    rows = read_rows(layout.csv("train"))
    write_rows(layout.csv("train"), [*rows, AvaRow("a", 4, 0.1, 0.2, 0.4, 0.9, 2, 0)])  # person 0 walks too
    assert validate_dataset(layout.root).ok  # no groups known: nothing to check
    (layout.annotations / PROVENANCE_FILE).write_text(json.dumps({"actions": ACTIONS.to_dict()}))
    report = validate_dataset(layout.root)
    assert [(p.code, p.message, p.where) for p in report.errors] == [
        (
            "exclusive-group",
            "group 'body' needs exactly one action, got 2 (stand, walk)",
            f"{layout.csv('train')} (a,0004 person 0)",
        )
    ]
    assert main(["validate", str(layout.root)]) == 1
    other = ActionList.from_obj({"groups": {"body": {"exclusive": True, "actions": ["sit", "walk", "talk"]}}})
    (layout.annotations / PROVENANCE_FILE).write_text(json.dumps({"actions": other.to_dict()}))
    assert dict(validate_dataset(layout.root).codes()) == {"groups-mismatch": 1}
