"""Agreement between two annotators of one clip, and the list of their disagreements for adjudication.

Boxes are matched per second, one to one, maximising the summed IoU over the pairs with IoU >= ``iou``
(Hungarian; pairs below the threshold are not allowed to pull the assignment away from valid ones). Among
equally good assignments the one where matched boxes share more actions wins (a tie-break 1e-6 below any IoU
difference that matters), so agreement(a, b) and agreement(b, a) pair the same boxes.

Over the matched boxes, per action group:
- exclusive group: Cohen's kappa of the two annotators' choices. A box's choice is its one action of the
  group, or "none" when it has 0 or more than 1 (the lint panel reports those);
  kappa = (p_o - p_e) / (1 - p_e) with p_o the observed agreement and p_e the chance agreement from the two
  annotators' marginals; when p_e = 1 (both gave every box the same single choice) kappa is 1.
- multi-select group: per action, F1 = 2 TP / (2 TP + FP + FN) treating either annotator as the reference (F1
  is symmetric); None for an action neither annotator used; ``macro_f1`` is the mean over the defined ones.
Unmatched boxes (drawn by one annotator only) are counted, and listed as disagreements.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from avaforge.boxes import iou_matrix
from avaforge.formats.actions import ActionGroup, ActionList
from avaforge.stages.via_import import LabelledBox

_TIE_BREAK = 1e-6  # weight of the shared-actions tie-break; far below any IoU difference that matters
NONE = "none"  # an exclusive group's choice when a box has 0 or several of its actions


@dataclass(frozen=True)
class GroupAgreement:
    group: str
    exclusive: bool
    boxes: int  # matched boxes the statistic is over
    observed: float | None = None  # exclusive: fraction of matched boxes with the same choice
    kappa: float | None = None  # exclusive: Cohen's kappa
    f1: dict[str, float | None] = field(default_factory=dict)  # multi-select: action name -> F1
    macro_f1: float | None = None  # multi-select: mean of the defined per-action F1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClipAgreement:
    matched: int
    unmatched_a: int  # boxes only annotator a drew
    unmatched_b: int
    groups: tuple[GroupAgreement, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "matched": self.matched,
            "unmatched_a": self.unmatched_a,
            "unmatched_b": self.unmatched_b,
            "groups": [g.to_dict() for g in self.groups],
        }


@dataclass(frozen=True)
class Disagreement:
    """One thing to adjudicate: a matched pair whose actions in ``group`` differ, or a box only one annotator
    drew (``group`` None; the other side's person, box and actions are None/empty)."""

    second: int
    person_a: int | None
    person_b: int | None
    box_a: tuple[float, float, float, float] | None
    box_b: tuple[float, float, float, float] | None
    group: str | None
    actions_a: tuple[int, ...]
    actions_b: tuple[int, ...]

    @property
    def kind(self) -> str:
        return "labels" if self.group is not None else ("only_a" if self.person_b is None else "only_b")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind}


Pair = tuple[LabelledBox, LabelledBox]


def match(
    a: Sequence[LabelledBox], b: Sequence[LabelledBox], iou: float = 0.5
) -> tuple[list[Pair], list[LabelledBox], list[LabelledBox]]:
    """Matched pairs and the unmatched boxes of a and of b, each in (second, person id) order."""
    pairs: list[Pair] = []
    only_a: list[LabelledBox] = []
    only_b: list[LabelledBox] = []
    for second in sorted({x.second for x in a} | {x.second for x in b}):
        sa = sorted((x for x in a if x.second == second), key=lambda x: x.person_id)
        sb = sorted((x for x in b if x.second == second), key=lambda x: x.person_id)
        ious = iou_matrix(_xyxy(sa), _xyxy(sb))
        score = np.where(ious >= iou, ious + _TIE_BREAK * _shared(sa, sb), 0.0)
        rows, cols = linear_sum_assignment(-score) if score.size else ([], [])
        kept = [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if ious[i, j] >= iou]
        used_a, used_b = {i for i, _ in kept}, {j for _, j in kept}
        pairs.extend((sa[i], sb[j]) for i, j in kept)
        only_a.extend(x for i, x in enumerate(sa) if i not in used_a)
        only_b.extend(x for j, x in enumerate(sb) if j not in used_b)
    return pairs, only_a, only_b


def agreement(
    a: Sequence[LabelledBox], b: Sequence[LabelledBox], actions: ActionList, iou: float = 0.5
) -> ClipAgreement:
    pairs, only_a, only_b = match(a, b, iou)
    groups = tuple(_exclusive(g, pairs) if g.exclusive else _multi_select(g, pairs) for g in actions.groups)
    return ClipAgreement(len(pairs), len(only_a), len(only_b), groups)


def disagreements(
    a: Sequence[LabelledBox], b: Sequence[LabelledBox], actions: ActionList, iou: float = 0.5
) -> list[Disagreement]:
    """Every matched pair and group where the two differ, then each box only one side has; by second."""
    pairs, only_a, only_b = match(a, b, iou)
    out: list[Disagreement] = []
    for x, y in pairs:
        for g in actions.groups:
            ids = g.ids()
            ax, by = tuple(i for i in x.actions if i in ids), tuple(i for i in y.actions if i in ids)
            if set(ax) != set(by):
                out.append(Disagreement(x.second, x.person_id, y.person_id, x.box, y.box, g.name, ax, by))
    out.extend(Disagreement(x.second, x.person_id, None, x.box, None, None, x.actions, ()) for x in only_a)
    out.extend(Disagreement(y.second, None, y.person_id, None, y.box, None, (), y.actions) for y in only_b)
    out.sort(key=lambda d: (d.second, d.kind != "labels", _or_minus(d.person_a), _or_minus(d.person_b)))
    return out


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> tuple[float | None, float | None]:
    """(observed agreement, kappa) of two raters' categorical choices for the same items; (None, None) for
    no items, kappa 1 when chance agreement is 1 (both always gave the same single category)."""
    n = len(first)
    if n == 0:
        return None, None
    observed = sum(x == y for x, y in zip(first, second, strict=True)) / n
    ca, cb = Counter(first), Counter(second)
    chance = sum(ca[k] * cb[k] for k in ca) / (n * n)
    if chance >= 1.0:
        return observed, 1.0
    return observed, (observed - chance) / (1.0 - chance)


def f1(tp: int, fp: int, fn: int) -> float | None:
    denominator = 2 * tp + fp + fn
    return None if denominator == 0 else 2 * tp / denominator


def _exclusive(group: ActionGroup, pairs: list[Pair]) -> GroupAgreement:
    names = {a.id: a.name for a in group.actions}

    def choice(box: LabelledBox) -> str:
        chosen = [names[i] for i in box.actions if i in names]
        return chosen[0] if len(chosen) == 1 else NONE

    observed, kappa = cohen_kappa([choice(x) for x, _ in pairs], [choice(y) for _, y in pairs])
    return GroupAgreement(group.name, True, len(pairs), observed=observed, kappa=kappa)


def _multi_select(group: ActionGroup, pairs: list[Pair]) -> GroupAgreement:
    scores: dict[str, float | None] = {}
    for action in group.actions:
        ina = [action.id in x.actions for x, _ in pairs]
        inb = [action.id in y.actions for _, y in pairs]
        tp = sum(p and q for p, q in zip(ina, inb, strict=True))
        scores[action.name] = f1(tp, sum(ina) - tp, sum(inb) - tp)
    defined = [s for s in scores.values() if s is not None]
    macro = sum(defined) / len(defined) if defined else None
    return GroupAgreement(group.name, False, len(pairs), f1=scores, macro_f1=macro)


def _or_minus(person: int | None) -> int:
    return -1 if person is None else person


def _xyxy(boxes: list[LabelledBox]) -> np.ndarray:
    return np.array([x.box for x in boxes], dtype=np.float64).reshape(-1, 4)


def _shared(a: list[LabelledBox], b: list[LabelledBox]) -> np.ndarray:
    """Jaccard similarity of the action sets of each pair (the tie-break)."""
    out = np.zeros((len(a), len(b)))
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            union = set(x.actions) | set(y.actions)
            out[i, j] = len(set(x.actions) & set(y.actions)) / len(union) if union else 1.0
    return out
