"""Agreement between two annotators: a hand-computed clip, then properties (self-agreement, symmetry)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avaforge.formats.actions import ActionList
from avaforge.stages.via_import import LabelledBox
from avaforge.workbench.agreement import agreement, cohen_kappa, disagreements

ACTIONS = ActionList.from_obj(
    {
        "groups": {
            "body": {"exclusive": True, "actions": ["stand", "walk", "sit"]},  # 1, 2, 3
            "social": ["talk", "wave"],  # 4, 5
        }
    }
)
LEFT, RIGHT = (0.1, 0.1, 0.3, 0.5), (0.5, 0.1, 0.7, 0.5)


def box(second: int, person: int, xyxy: tuple[float, ...], *actions: int) -> LabelledBox:
    return LabelledBox(second, xyxy, person, actions, "human", f"workbench:{person}@{second}")


# second 1: a's person 0 and b's person 0 overlap at IoU 0.19/0.21 = 0.905 (same height, x 0.1-0.3 vs
# 0.11-0.31); the right boxes are identical. second 2: the same boxes, and b alone draws person 2.
# second 3: a's person 2 (x 0.8-0.95) and b's person 3 (x 0.9-0.95), same height: IoU 0.05/0.15 = 0.33 < 0.5
A = [
    box(1, 0, LEFT, 1, 4),
    box(1, 1, RIGHT, 2),
    box(2, 0, LEFT, 3, 5),
    box(2, 1, RIGHT, 2),
    box(3, 2, (0.8, 0.6, 0.95, 0.95), 1),
]
B = [
    box(1, 0, (0.11, 0.1, 0.31, 0.5), 1),
    box(1, 1, RIGHT, 2, 4),
    box(2, 0, LEFT, 1, 5),
    box(2, 1, RIGHT, 2),
    box(2, 2, (0.8, 0.1, 0.9, 0.3), 1),
    box(3, 3, (0.9, 0.6, 0.95, 0.95), 1),
]


def test_hand_computed_clip() -> None:
    result = agreement(A, B, ACTIONS)
    assert (result.matched, result.unmatched_a, result.unmatched_b) == (4, 1, 2)
    body, social = result.groups
    # body over the 4 matched boxes: a = stand, walk, sit, walk; b = stand, walk, stand, walk.
    # p_o = 3/4; marginals a {stand 1, walk 2, sit 1}, b {stand 2, walk 2}:
    # p_e = (1*2 + 2*2 + 1*0)/16 = 0.375; kappa = (0.75 - 0.375) / (1 - 0.375) = 0.6
    assert (body.group, body.exclusive, body.boxes) == ("body", True, 4)
    assert body.observed == pytest.approx(0.75) and body.kappa == pytest.approx(0.6)
    # talk: a on second 1 person 0, b on second 1 person 1 -> TP 0, FP 1, FN 1: F1 = 0 / 2 = 0;
    # wave: both on second 2 person 0 -> TP 1: F1 = 2 / 2 = 1; macro = 0.5
    assert social.f1 == {"talk": 0.0, "wave": 1.0} and social.macro_f1 == pytest.approx(0.5)
    assert social.kappa is None and not social.exclusive
    assert result.to_dict()["groups"][0]["kappa"] == pytest.approx(0.6)

    found = [
        (d.second, d.kind, d.person_a, d.person_b, d.group, d.actions_a, d.actions_b)
        for d in disagreements(A, B, ACTIONS)
    ]
    assert found == [
        (1, "labels", 0, 0, "social", (4,), ()),
        (1, "labels", 1, 1, "social", (), (4,)),
        (2, "labels", 0, 0, "body", (3,), (1,)),
        (2, "only_b", None, 2, None, (), (1,)),
        (3, "only_b", None, 3, None, (), (1,)),
        (3, "only_a", 2, None, None, (1,), ()),
    ]
    first = disagreements(A, B, ACTIONS)[0].to_dict()
    assert first["box_a"] == LEFT and first["box_b"] == (0.11, 0.1, 0.31, 0.5) and first["kind"] == "labels"


def test_kappa_edge_cases() -> None:
    assert cohen_kappa([], []) == (None, None)
    # one category used by both for every item: chance agreement 1, kappa defined as 1
    assert cohen_kappa(["stand"] * 3, ["stand"] * 3) == (1.0, 1.0)
    # opposite choices on two items: p_o 0, p_e = (1*1 + 1*1)/4 = 0.5 -> kappa -1
    assert cohen_kappa(["stand", "walk"], ["walk", "stand"]) == (0.0, -1.0)


def test_matching_prefers_pairs_over_the_threshold_and_agreeing_labels() -> None:
    a = [box(1, 0, (0.0, 0.0, 0.5, 1.0), 1)]
    b = [box(1, 7, (0.3, 0.0, 0.8, 1.0), 1), box(1, 8, (0.1, 0.0, 0.6, 1.0), 2)]
    # IoU(a, b7) = 0.2/0.8 = 0.25 < 0.5; IoU(a, b8) = 0.4/0.6 = 0.67: a pairs with 8, 7 stays unmatched
    (d, *rest) = disagreements(a, b, ACTIONS)
    assert (d.person_a, d.person_b, d.group) == (0, 8, "body") and [r.person_b for r in rest] == [7]
    # two people on one identical box: the pairing that agrees wins the tie
    same = (0.2, 0.2, 0.4, 0.8)
    a = [box(1, 0, same, 1), box(1, 1, same, 2)]
    b = [box(1, 5, same, 2), box(1, 6, same, 1)]
    assert disagreements(a, b, ACTIONS) == [] and agreement(a, b, ACTIONS).groups[0].kappa == 1.0


CELLS = [(cx / 3, cy / 3) for cx in range(3) for cy in range(3)]  # people apart: a 3x3 grid of cells
actions_st = st.tuples(st.sampled_from([1, 2, 3]), st.sets(st.sampled_from([4, 5]), max_size=2)).map(
    lambda t: tuple(sorted({t[0], *t[1]}))
)


@st.composite
def clip(draw: st.DrawFn) -> list[LabelledBox]:
    """Boxes on seconds 1..3, each person in their own grid cell (inset on a 1/60 grid)."""
    out = []
    for second in range(1, 4):
        cells = draw(st.lists(st.integers(0, 8), unique=True, max_size=5))
        for cell in cells:
            cx, cy = CELLS[cell]
            i = draw(st.lists(st.integers(0, 4), min_size=4, max_size=4))
            xyxy = (cx + i[0] / 60, cy + i[1] / 60, cx + (20 - i[2]) / 60, cy + (20 - i[3]) / 60)
            out.append(box(second, 10 * second + cell, xyxy, *draw(actions_st)))
    return out


@settings(max_examples=40, deadline=None)
@given(clip())
def test_agreement_with_itself_is_perfect(a: list[LabelledBox]) -> None:
    result = agreement(a, a, ACTIONS)
    assert (result.matched, result.unmatched_a, result.unmatched_b) == (len(a), 0, 0)
    body, social = result.groups
    assert body.kappa == (1.0 if a else None)
    assert all(v in (1.0, None) for v in social.f1.values())
    assert disagreements(a, a, ACTIONS) == []


def close(x: float | None, y: float | None) -> bool:
    return x == y if x is None or y is None else x == pytest.approx(y)


@settings(max_examples=40, deadline=None)
@given(clip(), clip())
def test_agreement_is_symmetric(a: list[LabelledBox], b: list[LabelledBox]) -> None:
    ab, ba = agreement(a, b, ACTIONS), agreement(b, a, ACTIONS)
    assert (ab.matched, ab.unmatched_a, ab.unmatched_b) == (ba.matched, ba.unmatched_b, ba.unmatched_a)
    for g, h in zip(ab.groups, ba.groups, strict=True):
        assert close(g.kappa, h.kappa) and close(g.observed, h.observed) and close(g.macro_f1, h.macro_f1)
        assert g.f1.keys() == h.f1.keys() and all(close(g.f1[k], h.f1[k]) for k in g.f1)
    swapped = sorted(  # by repr: an unmatched box's other person id is None
        (
            (d.second, d.person_b, d.person_a, d.group, d.actions_b, d.actions_a)
            for d in disagreements(a, b, ACTIONS)
        ),
        key=repr,
    )
    assert swapped == sorted(
        (
            (d.second, d.person_a, d.person_b, d.group, d.actions_a, d.actions_b)
            for d in disagreements(b, a, ACTIONS)
        ),
        key=repr,
    )


def test_build_records_provenance_and_the_report_shows_agreement(tmp_path, people_rawframes) -> None:
    import json

    import numpy as np

    from avaforge.report import write_report
    from avaforge.settings import DatasetSettings
    from avaforge.stages.dataset import ClipBundle, build_dataset
    from avaforge.stages.frames import FramesInfo
    from avaforge.stages.ingest import ClipInfo
    from avaforge.stages.via_import import ClipLabels

    actions = ActionList.from_obj(
        {"groups": {"body": {"exclusive": True, "actions": ["stand", "walk", "sit"]}, "social": ["talk"]}}
    )  # stand 1, walk 2, sit 3, talk 4
    seconds = tuple(range(2, 9))

    def labelled(clip: str, person0: dict[int, tuple[int, str]], with_person1: bool) -> ClipLabels:
        out = []
        for t in seconds:
            action, source = person0[t]
            out.append(LabelledBox(t, LEFT, 0, (action,), source, f"workbench:0@{t}"))  # type: ignore[arg-type]
            if with_person1:
                out.append(LabelledBox(t, RIGHT, 1, (2, 4), "machine", f"workbench:1@{t}"))
        return ClipLabels(clip, out)

    def bundle(clip: str, labels: ClipLabels, review: ClipLabels | None) -> ClipBundle:
        props = {f"{clip},{t:04d}": np.array([[*LEFT, 0.9], [*RIGHT, 0.8]]) for t in seconds}
        return ClipBundle(
            ClipInfo(clip, f"video_{clip}", "x.mp4", 0.0, 10.0, 300, 426, 240),
            FramesInfo(clip, 300, 426, 240, tuple(range(10)), seconds),
            people_rawframes,
            props,
            labels,
            review,
        )

    # clip c1: person 0 stands, accepted suggestions on seconds 2-4, a person's label after; person 1 walks
    # and talks (machine). The reviewer saw person 0 sit on second 2.
    first = {t: (1, "suggestion" if t <= 4 else "human") for t in seconds}
    review = labelled("c1", {**first, 2: (3, "human")}, True)
    bundles = [
        bundle("c1", labelled("c1", first, True), review),
        bundle("c2", labelled("c2", {t: (1, "human") for t in seconds}, False), None),
    ]
    result = build_dataset(bundles, actions, DatasetSettings(), tmp_path / "ds")
    prov = json.loads((result.out / "annotations" / "provenance.json").read_text())
    # stand: c1 person 0 on 3 seconds by suggestion + 4 by hand, c2 person 0 on 7 by hand;
    # walk and talk: c1 person 1 on 7 seconds, machine
    zero = {"human": 0, "machine": 0, "suggestion": 0, "propagated": 0}
    assert prov["sources_per_action"] == {
        "stand": {**zero, "human": 11, "suggestion": 3},
        "walk": {**zero, "machine": 7},
        "sit": zero,
        "talk": {**zero, "machine": 7},
    }
    assert prov["sources"] == {"suggestion": 3, "human": 11, "machine": 7}  # boxes, as before
    assert ActionList.from_obj(prov["actions"]) == actions
    assert list(prov["agreement"]) == ["c1"]
    body, social = prov["agreement"]["c1"]["groups"]
    # 14 matched boxes; body a = stand x7, walk x7; b = sit x1, stand x6, walk x7: p_o = 13/14,
    # p_e = (7*6 + 7*7)/14^2 = 91/196, kappa = (182/196 - 91/196) / (105/196) = 91/105 = 0.867
    assert prov["agreement"]["c1"]["matched"] == 14
    assert body["kappa"] == pytest.approx(91 / 105) and social["f1"] == {"talk": 1.0}
    page = write_report(result.out).read_text()
    assert (
        "<td>c1</td><td>body</td><td>kappa 0.87 (observed 0.93)</td><td>14 matched, 0 + 0 unmatched</td>"
        in page
    )
    assert (
        "<td>stand</td><td>11</td><td>0</td><td>0</td><td>3</td>" in page
    )  # human, machine, propagated, sugg.
