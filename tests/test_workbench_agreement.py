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
