"""The lint panel's rules: what is incomplete or suspicious in a clip's labels before it goes to build.

Kinds: "unlabelled" (a box with no action: build writes no row for it), "exclusive" (a labelled box with 0 or
several actions of an exclusive group: the validator rejects it), "outside" (a box reaching beyond the frame),
"tiny" (a side shorter than ``min_box_px`` pixels: usually a stray click). A box may have several issues.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from avaforge.formats.actions import ActionList
from avaforge.stages.via_import import LabelledBox

KINDS = ("unlabelled", "exclusive", "outside", "tiny")
_EPS = 1e-6  # normalised coordinates are pixels / size: allow their rounding at the limits


@dataclass(frozen=True)
class LintIssue:
    kind: str
    person_id: int
    second: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lint(
    boxes: Sequence[LabelledBox],
    actions: ActionList,
    frame_size: tuple[int, int],
    min_box_px: float = 16.0,
) -> list[LintIssue]:
    """Issues of every box, ordered by second, person and kind; ``frame_size`` is (width, height) pixels."""
    width, height = frame_size
    out: list[LintIssue] = []
    for b in boxes:

        def issue(kind: str, message: str, b: LabelledBox = b) -> None:
            out.append(
                LintIssue(kind, b.person_id, b.second, f"second {b.second}, person {b.person_id}: {message}")
            )

        if not b.actions:
            issue("unlabelled", "no action")
        else:
            for message in actions.exclusive_violations(b.actions):
                issue("exclusive", message)
        x1, y1, x2, y2 = b.box
        if min(x1, y1) < -_EPS or max(x2, y2) > 1.0 + _EPS:
            issue("outside", f"box ({x1:.3f}, {y1:.3f}, {x2:.3f}, {y2:.3f}) reaches beyond the frame")
        w_px, h_px = (x2 - x1) * width, (y2 - y1) * height
        if min(w_px, h_px) < min_box_px - _EPS:  # a box of exactly min_box_px is not tiny
            issue("tiny", f"box is {w_px:.0f}x{h_px:.0f} px, under {min_box_px:g} px")
    out.sort(key=lambda i: (i.second, i.person_id, KINDS.index(i.kind)))
    return out
