from pathlib import Path

import pytest

from avaforge.formats.actions import ActionList
from avaforge.formats.errors import FormatError
from avaforge.formats.pbtxt import format_pbtxt, parse_pbtxt, read_pbtxt, write_pbtxt
from tests.reference_data import mmaction_label_map_bytes

SEED_ACTIONS = ["talk", "bow", "stand", "sit", "walk", "hand up", "catch"]


@pytest.mark.parametrize(
    "items",
    [
        # mmaction2's AVA sample label map: AVA ids 12, 17, 79, 80, and one name used twice
        [(12, "action1"), (17, "action2"), (79, "action3"), (80, "action3")],
        [(1, "action1"), (2, "action2"), (3, "action3")],  # its evaluation test's 3 classes
    ],
)
def test_mmaction_label_maps_round_trip_byte_identical(tmp_path: Path, items: list[tuple[int, str]]) -> None:
    src = tmp_path / "action_list.txt"
    src.write_bytes(mmaction_label_map_bytes(items))
    assert read_pbtxt(src) == items
    write_pbtxt(tmp_path / "out.pbtxt", read_pbtxt(src))
    assert (tmp_path / "out.pbtxt").read_bytes() == src.read_bytes()


def test_pbtxt_is_read_back_by_mmaction2s_own_parser(tmp_path: Path) -> None:
    from mmaction.evaluation.functional.ava_utils import read_labelmap

    actions = ActionList.from_flat(SEED_ACTIONS)
    write_pbtxt(tmp_path / "a.pbtxt", actions.pbtxt_items())
    with open(tmp_path / "a.pbtxt") as fh:
        labelmap, ids = read_labelmap(fh)
    assert ids == set(range(1, 8))  # the 7 seed actions get ids 1..7 in list order
    assert [d["name"] for d in labelmap] == SEED_ACTIONS


def test_pbtxt_rejects_names_mmaction2_would_cut() -> None:
    with pytest.raises(FormatError, match="quote"):
        format_pbtxt([(1, 'say "hi"')])


def test_pbtxt_reports_wrong_indent_and_empty() -> None:
    items, problems = parse_pbtxt('item {\n name: "talk"\n id: 1\n}\n', "a.pbtxt")
    assert items == []
    assert {p.code for p in problems} == {"pbtxt-indent", "pbtxt-empty"}
    _, problems = parse_pbtxt("", "seed.pbtxt")
    assert [p.code for p in problems] == ["pbtxt-empty"]


def test_action_list_groups_assign_ids_in_order(tmp_path: Path) -> None:
    path = tmp_path / "actions.yaml"
    path.write_text("groups:\n  body: [stand, sit, walk]\n  head: [talk]\n  limbs: ['hand up', catch]\n")
    actions = ActionList.load(path)
    assert [(a.id, a.name) for a in actions] == [
        (1, "stand"),
        (2, "sit"),
        (3, "walk"),
        (4, "talk"),
        (5, "hand up"),
        (6, "catch"),
    ]
    assert [g.name for g in actions.groups] == ["body", "head", "limbs"]


def test_action_list_json_and_pinned_ids(tmp_path: Path) -> None:
    path = tmp_path / "actions.json"
    path.write_text('{"groups": {"head": ["talk", {"name": "nod", "id": 3}], "body": ["stand"]}}')
    actions = ActionList.load(path)
    # nod is pinned to 3; the unpinned actions take the free ids in file order: talk 1, stand 2
    assert {a.name: a.id for a in actions} == {"talk": 1, "nod": 3, "stand": 2}
    assert actions.pbtxt_items() == [(1, "talk"), (2, "stand"), (3, "nod")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("groups: {a: [x, x]}", "unique"),
        ("groups: {a: []}", "non-empty list"),
        ("groups: {a: [{name: x, id: 5}]}", "exactly 1..1"),
        ("actions: [x]", "'groups'"),
        ("groups: {a: ['say \"x\"']}", "quote"),
        ("groups: {a: [x, {name: y, id: 1}]}", None),
    ],
)
def test_action_list_errors(tmp_path: Path, text: str, message: str | None) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(text)
    if message is None:  # a pin takes id 1, the unpinned action gets the next free id
        assert {a.name: a.id for a in ActionList.load(path)} == {"x": 2, "y": 1}
        return
    with pytest.raises(FormatError, match=message):
        ActionList.load(path)
