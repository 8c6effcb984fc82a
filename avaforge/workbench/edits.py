"""Edits of a workbench document: pure functions ``Document -> Document``; a refused edit raises EditError.

Labels
- ``toggle_action``: an action of an exclusive group (``ActionGroup.exclusive``) replaces the group's other
  actions on the box; an action of a multi-select group toggles.
- ``accept_suggestion``: the box takes its machine suggestion (source "suggestion").
- ``copy_previous``: the box takes the labels of the same person's previous box (source "propagated").
- ``carry_forward``: the person's next box takes this box's labels (source "propagated").

Identity
- ``merge``: every box of ``other`` becomes ``keep``'s (refused where both have a box in the same second).
- ``split``: the person's boxes from ``second`` on become a new person.
- ``swap``: from ``second`` on, two people exchange ids.

Boxes
- ``add_box``: a drawn box, for a new person or a person without a box in that second.
- ``delete_box``.
- ``move_box`` (move or resize): the box takes the new coordinates and is marked ``edited``; LATER SECONDS
  FOLLOW: each later box of the same person that is still the tracker's (not ``edited``) is shifted by the
  same per-coordinate change (x1, y1, x2, y2: a move shifts all four, a resize the edges it moved), clamped
  to the frame, up to the person's next edited box, which a person placed and so stays.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from avaforge.formats.actions import ActionList
from avaforge.workbench.document import Box, Document

MIN_BOX_PX = 2.0  # a box narrower or lower than this cannot be drawn (a click, not a drag)


class EditError(ValueError):
    """An edit that does not apply to the document (names the person/second)."""


def _get(doc: Document, person: int, second: int) -> Box:
    b = doc.box(person, second)
    if b is None:
        raise EditError(f"person {person} has no box at second {second}")
    return b


def _put(doc: Document, old: Box | None, new: Iterable[Box]) -> Document:
    return doc.with_boxes([*(b for b in doc.boxes if b is not old), *new])


def _checked_actions(doc: Document, actions: Iterable[int]) -> tuple[int, ...]:
    out = tuple(sorted(set(actions)))
    unknown = [a for a in out if doc.action_ids and a not in doc.action_ids]
    if unknown:
        raise EditError(f"action ids {unknown} are not in the action list")
    return out


# ---- labels -----------------------------------------------------------------------------------------------


def set_labels(
    doc: Document, person: int, second: int, actions: Iterable[int], source: str = "human"
) -> Document:
    b = _get(doc, person, second)
    return _put(doc, b, [replace(b, actions=_checked_actions(doc, actions), source=source)])


def toggle_action(doc: Document, actions: ActionList, person: int, second: int, action_id: int) -> Document:
    b = _get(doc, person, second)
    group = next((g for g in actions.groups if any(a.id == action_id for a in g.actions)), None)
    if group is None:
        raise EditError(f"action id {action_id} is not in the action list")
    current = set(b.actions)
    if group.exclusive:
        current -= {a.id for a in group.actions}
        current.add(action_id)
    else:
        current ^= {action_id}
    return set_labels(doc, person, second, current)


def accept_suggestion(doc: Document, person: int, second: int) -> Document:
    b = _get(doc, person, second)
    if not b.suggested:
        raise EditError(f"person {person} has no suggestion at second {second}")
    return set_labels(doc, person, second, b.suggested, "suggestion")


def copy_previous(doc: Document, person: int, second: int) -> Document:
    earlier = [b for b in doc.track(person) if b.second < second]
    if not earlier:
        raise EditError(f"person {person} has no box before second {second}")
    return set_labels(doc, person, second, earlier[-1].actions, "propagated")


def next_box(doc: Document, person: int, second: int) -> Box | None:
    return next((b for b in doc.track(person) if b.second > second), None)


def carry_forward(doc: Document, person: int, second: int) -> Document:
    b = _get(doc, person, second)
    nxt = next_box(doc, person, second)
    if nxt is None:
        raise EditError(f"person {person} has no box after second {second}")
    return set_labels(doc, person, nxt.second, b.actions, "propagated")


# ---- identity ---------------------------------------------------------------------------------------------


def _person(doc: Document, person: int) -> list[Box]:
    boxes = doc.track(person)
    if not boxes:
        raise EditError(f"no person {person} in this clip")
    return boxes


def merge(doc: Document, keep: int, other: int) -> Document:
    if keep == other:
        raise EditError(f"cannot merge person {keep} with itself")
    kept = {b.second for b in _person(doc, keep)}
    moving = _person(doc, other)
    both = sorted(kept & {b.second for b in moving})
    if both:
        raise EditError(f"people {keep} and {other} both have a box at seconds {both}; delete one first")
    return doc.with_boxes([replace(b, person=keep) if b.person == other else b for b in doc.boxes])


def split(doc: Document, person: int, second: int) -> Document:
    boxes = _person(doc, person)
    if not any(b.second < second for b in boxes) or not any(b.second >= second for b in boxes):
        raise EditError(f"person {person} has no boxes on both sides of second {second}")
    new = doc.next_person
    return doc.with_boxes(
        [replace(b, person=new) if b.person == person and b.second >= second else b for b in doc.boxes]
    )


def swap(doc: Document, a: int, b: int, second: int) -> Document:
    if a == b:
        raise EditError(f"cannot swap person {a} with itself")
    _person(doc, a), _person(doc, b)
    names = {a: b, b: a}

    def renamed(x: Box) -> Box:
        return replace(x, person=names[x.person]) if x.second >= second and x.person in names else x

    return doc.with_boxes([renamed(x) for x in doc.boxes])


# ---- boxes ------------------------------------------------------------------------------------------------


def _checked_box(doc: Document, box: Iterable[float]) -> tuple[float, float, float, float]:
    w, h = doc.frame_size
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = sorted((min(max(x1, 0.0), w), min(max(x2, 0.0), w)))
    y1, y2 = sorted((min(max(y1, 0.0), h), min(max(y2, 0.0), h)))
    if x2 - x1 < MIN_BOX_PX or y2 - y1 < MIN_BOX_PX:
        raise EditError(f"box {[x1, y1, x2, y2]} is smaller than {MIN_BOX_PX:g} px inside the frame")
    return (round(x1, 3), round(y1, 3), round(x2, 3), round(y2, 3))  # as the JSON keeps them


def add_box(doc: Document, second: int, box: Iterable[float], person: int | None = None) -> Document:
    if second not in doc.seconds:
        raise EditError(f"second {second} is not a labelled second")
    xyxy = _checked_box(doc, box)
    if person is None:
        person = doc.next_person
    elif doc.box(person, second) is not None:
        raise EditError(f"person {person} already has a box at second {second}")
    elif person >= doc.next_person:
        raise EditError(f"no person {person} in this clip (draw a new person instead)")
    return doc.with_boxes([*doc.boxes, Box(person, second, xyxy, edited=True)])


def delete_box(doc: Document, person: int, second: int) -> Document:
    return _put(doc, _get(doc, person, second), [])


def move_box(doc: Document, person: int, second: int, box: Iterable[float]) -> Document:
    b = _get(doc, person, second)
    new = _checked_box(doc, box)
    delta = [n - o for n, o in zip(new, b.box, strict=True)]
    changed = {b: replace(b, box=new, edited=True)}
    for later in (x for x in doc.track(person) if x.second > second):
        if later.edited:
            break
        shifted = _shifted(doc, later.box, delta)
        if shifted is not None:
            changed[later] = replace(later, box=shifted)
    return doc.with_boxes([changed.get(x, x) for x in doc.boxes])


def _shifted(
    doc: Document, box: tuple[float, float, float, float], delta: list[float]
) -> tuple[float, float, float, float] | None:
    try:
        return _checked_box(doc, (v + d for v, d in zip(box, delta, strict=True)))
    except EditError:
        return None  # shifted off the frame: the tracker's box stays where it was


# ---- one edit from the page -------------------------------------------------------------------------------

# op -> the argument names it takes ("box" is [x1, y1, x2, y2] in pixels, "actions" a list of ids, the
# rest integers; "person" of add_box may be null for a new person)
OPS: dict[str, tuple[str, ...]] = {
    "set_labels": ("person", "second", "actions"),
    "toggle_action": ("person", "second", "action"),
    "accept_suggestion": ("person", "second"),
    "copy_previous": ("person", "second"),
    "carry_forward": ("person", "second"),
    "merge": ("keep", "other"),
    "split": ("person", "second"),
    "swap": ("a", "b", "second"),
    "add_box": ("second", "box", "person"),
    "delete_box": ("person", "second"),
    "move_box": ("person", "second", "box"),
}


def _arg_int(op: dict[str, object], name: str) -> int:
    v = op.get(name)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 10**9:
        raise EditError(f"{op.get('op')}: {name} must be an integer in [0, 1e9], got {v!r}")
    return v


def _arg_numbers(op: dict[str, object], name: str, n: int | None) -> list[float]:
    v = op.get(name)
    ok = isinstance(v, list) and (n is None or len(v) == n)
    if ok:
        ok = all(isinstance(x, int | float) and not isinstance(x, bool) and abs(x) < 1e7 for x in v)  # type: ignore[union-attr]
    if not ok:
        raise EditError(f"{op.get('op')}: {name} must be a list of {n or 'some'} numbers, got {v!r}")
    return [float(x) for x in v]  # type: ignore[union-attr]


def apply_edit(doc: Document, actions: ActionList, op: dict[str, object]) -> Document:
    """One edit as the page sends it: ``{"op": "toggle_action", "person": 3, "second": 4, "action": 1}``."""
    name = op.get("op")
    if not isinstance(name, str) or name not in OPS:
        raise EditError(f"unknown edit {name!r}; one of {sorted(OPS)}")
    extra = sorted(set(op) - {"op", *OPS[name]})
    if extra:
        raise EditError(f"{name}: unknown arguments {extra}")
    i = lambda k: _arg_int(op, k)  # noqa: E731
    if name == "set_labels":
        return set_labels(doc, i("person"), i("second"), [int(a) for a in _arg_numbers(op, "actions", None)])
    if name == "toggle_action":
        return toggle_action(doc, actions, i("person"), i("second"), i("action"))
    if name == "merge":
        return merge(doc, i("keep"), i("other"))
    if name == "swap":
        return swap(doc, i("a"), i("b"), i("second"))
    if name == "add_box":
        person = None if op.get("person") is None else i("person")
        return add_box(doc, i("second"), _arg_numbers(op, "box", 4), person)
    if name == "move_box":
        return move_box(doc, i("person"), i("second"), _arg_numbers(op, "box", 4))
    simple = {
        "accept_suggestion": accept_suggestion,
        "copy_previous": copy_previous,
        "carry_forward": carry_forward,
        "split": split,
        "delete_box": delete_box,
    }
    return simple[name](doc, i("person"), i("second"))
