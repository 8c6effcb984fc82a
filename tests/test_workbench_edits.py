"""The workbench document and its edits, on documents built from real Tracks objects (no video needed): every
edit's rule, validation naming the bad field, and properties (hypothesis) over random documents and edits:
merge then split restores the labels, export ids are 1..n, a saved document reloads equal."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avaforge.boxes import Boxes
from avaforge.formats.actions import ActionGroup, ActionList
from avaforge.formats.errors import FormatError
from avaforge.formats.timeline import keyframe_index
from avaforge.stages.frames import FramesInfo
from avaforge.stages.track import Tracks
from avaforge.workbench import edits
from avaforge.workbench.document import Document, build_document, with_predictions

ACTIONS = ActionList.from_obj({"groups": {"body": ["stand", "walk"], "hands": ["wave", "point"]}})
FRAMES = FramesInfo("v_000000-000007", 210, 320, 240, tuple(range(7)), (2, 3, 4, 5))


def exclusive_body() -> ActionList:
    """The same list with ``body`` exclusive (set whether or not ActionGroup has the field yet)."""
    body, hands = ACTIONS.groups
    body = ActionGroup(body.name, body.actions)  # a copy: ACTIONS stays multi-select
    object.__setattr__(body, "exclusive", True)
    return ActionList((body, hands))


def tracks(people: dict[int, dict[int, tuple[float, float, float, float]]]) -> Tracks:
    """Tracks from {track id: {second: box}}: the tracker's keyframe boxes."""
    frames: dict[int, tuple[list, list]] = {}
    for tid, per_second in people.items():
        for second, box in per_second.items():
            frames.setdefault(keyframe_index(second), ([], []))[0].append(box)
            frames[keyframe_index(second)][1].append(tid)
    return Tracks(
        {
            f: Boxes(
                np.array(xy, float).reshape(-1, 4), np.full(len(ids), 0.9), "pixels", None, np.array(ids)
            )
            for f, (xy, ids) in frames.items()
        }
    )


def doc_of(people: dict[int, dict[int, tuple[float, float, float, float]]], sugg=None) -> Document:
    ids = [a.id for a in ACTIONS]
    return build_document(FRAMES, tracks(people), 0.0, sugg, ids)


# a tracker split: person 0 at seconds 2-3, the same person comes back as 2 at 4-5; person 1 everywhere
SPLIT = {
    0: {2: (10, 10, 50, 100), 3: (14, 10, 54, 100)},
    1: {s: (200, 20, 240, 120) for s in (2, 3, 4, 5)},
    2: {4: (18, 10, 58, 100), 5: (22, 10, 62, 100)},
}


def test_built_from_tracks_with_suggestions_and_roundtrips() -> None:
    doc = doc_of(SPLIT, {(2, 0): (1,), (3, 1): (2, 3)})
    assert doc.seconds == (2, 3, 4, 5) and doc.next_person == 3 and len(doc.boxes) == 8
    assert doc.box(0, 2).suggested == (1,) and doc.box(1, 3).suggested == (2, 3)
    assert doc.box(0, 2).actions == () and not doc.box(0, 2).edited
    again = Document.from_bytes(doc.to_bytes(), action_ids=doc.action_ids)
    assert again == doc


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d.update(schema="other/2"), "schema"),
        (lambda d: d.pop("clip_id"), "missing field 'clip_id'"),
        (lambda d: d.update(frame_size=[320]), "frame_size"),
        (lambda d: d["boxes"][0].update(box=[10, 10, 5, 100]), "boxes[0]: box"),
        (lambda d: d["boxes"][0].update(box=[10, 10, float("nan"), 100]), "boxes[0]: box[2]"),
        (lambda d: d["boxes"][1].update(second=6), "boxes[1]: second"),
        (lambda d: d["boxes"][0].update(actions=[9]), "boxes[0]: actions"),
        (lambda d: d["boxes"][0].update(actions=["1"]), "boxes[0]: actions[0]"),
        (lambda d: d["boxes"][0].update(source="robot"), "boxes[0]: source"),
        (lambda d: d["boxes"][0].update(edited=1), "boxes[0]: edited"),
        (lambda d: d["boxes"][0].update(person=True), "boxes[0]: person"),
        (lambda d: d["boxes"][0].update(colour="red"), "boxes[0]"),
        (lambda d: d["boxes"].append(dict(d["boxes"][0])), "second box"),
        (lambda d: d.update(next_person=1), "next_person"),
    ],
)
def test_a_bad_document_names_the_field(mutate, where: str) -> None:
    doc = doc_of(SPLIT)
    obj = json.loads(doc.to_bytes())
    mutate(obj)
    with pytest.raises(FormatError) as err:
        Document.from_dict(obj, "doc.json", doc.action_ids)
    assert where in str(err.value) and "doc.json" in str(err.value)


def test_labels_exclusive_replace_multi_toggle_suggestion_copy_carry() -> None:
    acts = exclusive_body()
    doc = doc_of(SPLIT, {(2, 1): (2, 3)})
    doc = edits.toggle_action(doc, acts, 1, 2, 1)  # stand
    doc = edits.toggle_action(doc, acts, 1, 2, 2)  # walk replaces stand (exclusive)
    doc = edits.toggle_action(doc, acts, 1, 2, 3)  # wave added
    doc = edits.toggle_action(doc, acts, 1, 2, 4)  # point added
    doc = edits.toggle_action(doc, acts, 1, 2, 4)  # point removed again (multi-select toggles)
    assert doc.box(1, 2).actions == (2, 3) and doc.box(1, 2).source == "human"
    multi = edits.toggle_action(doc_of(SPLIT), ACTIONS, 1, 2, 1)
    assert edits.toggle_action(multi, ACTIONS, 1, 2, 2).box(1, 2).actions == (1, 2)  # not exclusive: both
    doc = edits.carry_forward(doc, 1, 2)
    assert doc.box(1, 3).actions == (2, 3) and doc.box(1, 3).source == "propagated"
    doc = edits.copy_previous(doc, 1, 4)
    assert doc.box(1, 4).actions == (2, 3)
    s = edits.accept_suggestion(doc_of(SPLIT, {(2, 1): (2, 3)}), 1, 2).box(1, 2)
    assert (s.actions, s.source) == ((2, 3), "suggestion")
    with pytest.raises(edits.EditError, match="no box before"):
        edits.copy_previous(doc, 1, 2)
    with pytest.raises(edits.EditError, match="no box after"):
        edits.carry_forward(doc, 1, 5)
    with pytest.raises(edits.EditError, match="not in the action list"):
        edits.toggle_action(doc, acts, 1, 2, 9)


def test_merge_split_swap() -> None:
    doc = doc_of(SPLIT)
    merged = edits.merge(doc, 0, 2)
    assert [b.second for b in merged.track(0)] == [2, 3, 4, 5] and not merged.track(2)
    with pytest.raises(edits.EditError, match="both have a box at seconds"):
        edits.merge(doc, 0, 1)
    back = edits.split(merged, 0, 4)
    assert [b.second for b in back.track(3)] == [4, 5]  # the new id is next_person
    assert back.to_labels().boxes == doc.to_labels().boxes  # labels (ids 1..n) as before the merge
    swapped = edits.swap(doc, 0, 1, 3)
    assert swapped.box(1, 3).box == doc.box(0, 3).box and swapped.box(0, 2).box == doc.box(0, 2).box


def test_add_delete_and_later_seconds_follow_a_move() -> None:
    doc = doc_of(SPLIT)
    doc = edits.add_box(doc, 3, (100, 100, 140, 200))
    assert doc.box(3, 3).edited and doc.next_person == 4
    with pytest.raises(edits.EditError, match="already has a box"):
        edits.add_box(doc, 3, (100, 100, 140, 200), person=3)
    doc = edits.move_box(doc, 1, 4, (200, 20, 240, 120))  # unchanged, but now human-placed
    moved = edits.move_box(doc, 1, 2, (205, 25, 250, 125))  # +5 +5 +10 +5
    assert moved.box(1, 2).box == (205, 25, 250, 125) and moved.box(1, 2).edited
    assert moved.box(1, 3).box == (205, 25, 250, 125) and not moved.box(1, 3).edited  # followed
    assert moved.box(1, 4).box == (200, 20, 240, 120)  # a human-placed box stops the follow
    assert moved.box(1, 5).box == (200, 20, 240, 120)
    gone = edits.delete_box(moved, 1, 5)
    assert gone.box(1, 5) is None and len(gone.boxes) == len(moved.boxes) - 1
    with pytest.raises(edits.EditError, match="smaller than"):
        edits.move_box(doc, 1, 2, (400, 20, 500, 120))  # right of the 320 px frame: nothing left


def test_export_ids_are_one_to_n_in_order_of_appearance() -> None:
    doc = edits.set_labels(doc_of(SPLIT), 2, 4, [1])
    doc = edits.set_labels(doc, 1, 2, [2])
    labels = doc.to_labels()
    assert [(b.second, b.person_id, b.region) for b in labels.boxes] == [
        (2, 2, "workbench:2@2"),
        (4, 3, "workbench:3@4"),
    ]
    assert labels.boxes[0].box == pytest.approx((200 / 320, 20 / 240, 240 / 320, 120 / 240))
    assert len(labels.unlabelled) == 6 and labels.drawn == 0


# ---- properties -------------------------------------------------------------------------------------------

box_st = st.tuples(st.floats(0, 150), st.floats(0, 100), st.floats(160, 320), st.floats(110, 240)).map(
    lambda t: tuple(round(v, 1) for v in t)
)
people_st = st.dictionaries(
    st.integers(0, 5), st.dictionaries(st.sampled_from([2, 3, 4, 5]), box_st, min_size=1), min_size=1
)
op_st = st.fixed_dictionaries(
    {
        "op": st.sampled_from(sorted(edits.OPS)),
        "person": st.integers(0, 7),
        "second": st.sampled_from([2, 3, 4, 5]),
        "action": st.integers(1, 4),
        "actions": st.lists(st.integers(1, 4), unique=True, max_size=3),
        "keep": st.integers(0, 7),
        "other": st.integers(0, 7),
        "a": st.integers(0, 7),
        "b": st.integers(0, 7),
        "box": box_st.map(list),
    }
)


@settings(max_examples=40, deadline=None)
@given(people=people_st, ops=st.lists(op_st, max_size=12))
def test_any_edit_sequence_keeps_a_valid_document_with_contiguous_export_ids(people, ops) -> None:
    doc = doc_of(people)
    for op in ops:
        op = {k: v for k, v in op.items() if k == "op" or k in edits.OPS[op["op"]]}
        try:
            doc = edits.apply_edit(doc, ACTIONS, op)
        except edits.EditError:
            continue
        assert Document.from_bytes(doc.to_bytes(), action_ids=doc.action_ids) == doc
    exported = doc.to_labels()
    used = {b.person_id for b in exported.boxes}
    used |= {int(re.search(r"person (\d+)", u)[1]) for u in exported.unlabelled}  # type: ignore[index]
    assert sorted(used) == list(range(1, len({b.person for b in doc.boxes}) + 1))


@settings(max_examples=40, deadline=None)
@given(people=people_st, cut=st.sampled_from([3, 4, 5]), labels=st.lists(st.integers(1, 4), max_size=2))
def test_split_then_merge_restores_the_labels(people, cut, labels) -> None:
    doc = doc_of(people)
    for b in doc.boxes:
        doc = edits.set_labels(doc, b.person, b.second, labels)
    person = doc.boxes[0].person
    try:
        parted = edits.split(doc, person, cut)
    except edits.EditError:
        return
    rejoined = edits.merge(parted, person, parted.next_person - 1)
    assert rejoined.to_labels().boxes == doc.to_labels().boxes
    assert {b.key for b in rejoined.boxes} == {b.key for b in doc.boxes}


def test_a_models_scores_become_suggestions() -> None:
    doc = doc_of(SPLIT, {(2, 0): (1,)})
    scores = {
        (0, 2): [(2, 0.9), (1, 0.8), (3, 0.7), (4, 0.2)],  # body exclusive: walk only; hands: wave only
        (1, 3): [(1, 0.3), (2, 0.1)],  # nothing reaches the threshold
    }
    got = with_predictions(doc, scores, exclusive_body(), threshold=0.5)
    assert got.box(0, 2).suggested == (2, 3) and got.box(1, 3).suggested == ()
    assert got.box(1, 2) == doc.box(1, 2)  # no prediction: as it was
    multi = with_predictions(doc, scores, ACTIONS, threshold=0.5)
    assert multi.box(0, 2).suggested == (1, 2, 3)  # multi-select: every action >= 0.5
