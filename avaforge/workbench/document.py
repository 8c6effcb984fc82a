"""The workbench's editable per-clip document: people over the clip's labelled seconds, boxes and labels.

JSON, versioned (``schema``)::

    {"schema": "avaforge.workbench/1", "clip_id": "v_000000-000007", "fps": 30,
     "frame_size": [w, h], "num_frames": 210, "seconds": [2, 3, 4, 5],
     "next_person": 7,
     "boxes": [{"person": 0, "second": 2, "box": [x1, y1, x2, y2], "edited": false,
                "actions": [1], "source": "human", "suggested": [1]}, ...]}

- ``seconds`` are the labelled seconds (the keyframes VIA gets: ``FramesInfo.labelled_seconds``);
- a box is one person at one labelled second, in pixels of the rawframes; ``person`` starts as the tracker's
  track id (``Tracks``), people drawn in the workbench get ``next_person``; one box per (person, second);
- ``edited`` marks a box whose geometry a person set (drawn, moved, resized): "later seconds follow" stops
  there (``avaforge.workbench.edits.move_box``);
- ``actions`` with their ``source`` ("human", "machine", "suggestion" = an accepted machine suggestion,
  "propagated" = copied or carried forward); ``suggested`` holds the machine's suggestion (autolabel's
  ``Workdir.suggestions``, or a model's), shown on the page and accepted with one key.

Export (``to_labels``) gives the VIA-import labels ``ClipLabels`` that ``avaforge build`` reads, with person
ids renumbered 1..n per clip in order of first appearance; a box without actions goes to ``unlabelled``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from avaforge.formats.actions import ActionList
from avaforge.formats.errors import FormatError
from avaforge.formats.timeline import FPS
from avaforge.stages.frames import FramesInfo
from avaforge.stages.track import Tracks
from avaforge.stages.via_import import ClipLabels, LabelledBox

SCHEMA = "avaforge.workbench/1"
SOURCES = ("human", "machine", "suggestion", "propagated")
MAX_ID = 10**9  # person ids and seconds stay well inside JSON's and JavaScript's exact integers


@dataclass(frozen=True)
class Box:
    person: int
    second: int
    box: tuple[float, float, float, float]  # pixels x1, y1, x2, y2
    edited: bool = False
    actions: tuple[int, ...] = ()
    source: str = "human"
    suggested: tuple[int, ...] = ()

    @property
    def key(self) -> tuple[int, int]:
        return (self.person, self.second)

    def to_dict(self) -> dict[str, Any]:
        return {
            "person": self.person,
            "second": self.second,
            "box": [round(v, 3) for v in self.box],
            "edited": self.edited,
            "actions": list(self.actions),
            "source": self.source,
            "suggested": list(self.suggested),
        }


@dataclass(frozen=True)
class Document:
    clip_id: str
    frame_size: tuple[int, int]  # (width, height)
    num_frames: int
    seconds: tuple[int, ...]
    boxes: tuple[Box, ...] = ()
    next_person: int = 0
    fps: int = FPS
    tracker_ids_end: int = 0  # the tracker's ids are below; people drawn in the workbench get ids from here
    action_ids: frozenset[int] = field(default_factory=frozenset)  # the work folder's action ids (checked)

    # ---- queries ------------------------------------------------------------------------------------------

    def box(self, person: int, second: int) -> Box | None:
        return next((b for b in self.boxes if b.person == person and b.second == second), None)

    def people(self) -> list[int]:
        """Person ids in order of first appearance (second, then x1)."""
        seen: dict[int, None] = {}
        for b in sorted(self.boxes, key=lambda b: (b.second, b.box[0], b.box[1], b.person)):
            seen.setdefault(b.person, None)
        return list(seen)

    def track(self, person: int) -> list[Box]:
        return sorted((b for b in self.boxes if b.person == person), key=lambda b: b.second)

    def with_boxes(self, boxes: Iterable[Box], next_person: int | None = None) -> Document:
        ordered = tuple(sorted(boxes, key=lambda b: (b.second, b.person)))
        nxt = (
            max([self.next_person, *(b.person + 1 for b in ordered)]) if next_person is None else next_person
        )
        return replace(self, boxes=ordered, next_person=nxt)

    # ---- JSON ---------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "clip_id": self.clip_id,
            "fps": self.fps,
            "frame_size": list(self.frame_size),
            "num_frames": self.num_frames,
            "seconds": list(self.seconds),
            "next_person": self.next_person,
            "tracker_ids_end": self.tracker_ids_end,
            "boxes": [b.to_dict() for b in self.boxes],
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_dict(
        cls, obj: Any, where: str = "document", action_ids: Iterable[int] | None = None
    ) -> Document:
        """A checked document: any bad field raises a FormatError naming it (``where: field``)."""
        return _parse(obj, where, frozenset(action_ids) if action_ids is not None else None)

    @classmethod
    def from_bytes(
        cls, raw: bytes, where: str = "document", action_ids: Iterable[int] | None = None
    ) -> Document:
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FormatError(f"not JSON: {exc}", where) from None
        return cls.from_dict(obj, where, action_ids)

    # ---- export -------------------------------------------------------------------------------------------

    def as_labelled(self) -> list[LabelledBox]:
        """Every box as a LabelledBox with the document's person ids, unlabelled ones too."""
        w, h = self.frame_size
        return [
            LabelledBox(
                b.second,
                (_unit(b.box[0] / w), _unit(b.box[1] / h), _unit(b.box[2] / w), _unit(b.box[3] / h)),
                b.person,
                b.actions,
                b.source,  # type: ignore[arg-type]
                f"workbench:{b.person}@{b.second}",
            )
            for b in self.boxes
        ]

    def to_labels(self) -> ClipLabels:
        """The labels ``avaforge build`` reads; person ids 1..n per clip in order of first appearance."""
        ids = {p: i for i, p in enumerate(self.people(), start=1)}
        w, h = self.frame_size
        labels = ClipLabels(self.clip_id)
        for b in sorted(self.boxes, key=lambda b: (b.second, ids[b.person])):
            pid = ids[b.person]
            region = f"workbench:{pid}@{b.second}"
            if not b.actions:
                labels.unlabelled.append(f"{self.clip_id}: second {b.second}: person {pid} ({region})")
                continue
            x1, y1, x2, y2 = b.box
            norm = (_unit(x1 / w), _unit(y1 / h), _unit(x2 / w), _unit(y2 / h))
            labels.boxes.append(
                LabelledBox(b.second, norm, pid, tuple(sorted(b.actions)), b.source, region)  # type: ignore[arg-type]
            )
        labels.drawn = len({b.person for b in self.boxes if b.person >= self.tracker_ids_end})
        return labels


def _unit(v: float) -> float:
    return min(max(v, 0.0), 1.0)


def build_document(
    frames: FramesInfo,
    tracks: Tracks,
    min_score: float,
    suggestions: Mapping[tuple[int, int], tuple[int, ...]] | None = None,
    action_ids: Iterable[int] = (),
) -> Document:
    """The first document of a prepared clip: the tracked boxes of every labelled second (the ones VIA gets,
    ``min_score`` = ``settings.via.min_score``), with autolabel's suggestions beside them, no labels yet."""
    boxes = []
    for t in frames.labelled_seconds:
        people = tracks.at_second(t).with_min_score(min_score)
        for tid, xyxy in zip(people.tracked_ids, people.xyxy, strict=True):
            sugg = tuple(sorted((suggestions or {}).get((t, int(tid)), ())))
            boxes.append(Box(int(tid), t, tuple(round(float(v), 3) for v in xyxy), suggested=sugg))  # type: ignore[arg-type]
    end = max([*tracks.track_ids, -1]) + 1
    doc = Document(
        frames.clip_id,
        (frames.width, frames.height),
        frames.num_frames,
        tuple(frames.labelled_seconds),
        action_ids=frozenset(action_ids),
        tracker_ids_end=end,
    )
    return doc.with_boxes(boxes, next_person=end)


def with_predictions(
    doc: Document,
    scores: Mapping[tuple[int, int], Sequence[tuple[int, float]]],
    actions: ActionList,
    threshold: float = 0.5,
) -> Document:
    """A model's scores ((person, second) -> [(action id, score)]) as the boxes' suggestions: per exclusive
    group its best action if it scores >= ``threshold``, per multi-select group every action that does."""
    group_of = {a.id: g for g in actions.groups for a in g.actions}
    out = []
    for b in doc.boxes:
        if b.key not in scores:
            out.append(b)
            continue
        best: dict[str, tuple[float, int]] = {}
        picked = set()
        for action_id, score in scores[b.key]:
            group = group_of.get(action_id)
            if group is None or score < threshold:
                continue
            if group.exclusive:
                best[group.name] = max(best.get(group.name, (-1.0, 0)), (score, action_id))
            else:
                picked.add(action_id)
        picked |= {a for _, a in best.values()}
        out.append(replace(b, suggested=tuple(sorted(picked))))
    return doc.with_boxes(out, next_person=doc.next_person)


# ---- parsing ----------------------------------------------------------------------------------------------


def _int(obj: Any, where: str, lo: int = 0, hi: int = MAX_ID) -> int:
    if not isinstance(obj, int) or isinstance(obj, bool) or not lo <= obj <= hi:
        raise FormatError(f"must be an integer in [{lo}, {hi}], got {obj!r}", where)
    return obj


def _ints(obj: Any, where: str, allowed: frozenset[int] | None) -> tuple[int, ...]:
    if not isinstance(obj, list):
        raise FormatError(f"must be a list of action ids, got {obj!r}", where)
    out = tuple(_int(v, f"{where}[{i}]", 1) for i, v in enumerate(obj))
    if len(set(out)) != len(out):
        raise FormatError(f"repeats an action id: {list(out)}", where)
    if allowed is not None:
        unknown = sorted(set(out) - allowed)
        if unknown:
            raise FormatError(f"action ids {unknown} are not in the action list ({sorted(allowed)})", where)
    return tuple(sorted(out))


def _field(obj: dict[str, Any], name: str, where: str) -> Any:
    if name not in obj:
        raise FormatError(f"missing field {name!r}", where)
    return obj[name]


def _parse(obj: Any, where: str, action_ids: frozenset[int] | None) -> Document:
    if not isinstance(obj, dict):
        raise FormatError("must be a JSON object", where)
    schema = _field(obj, "schema", where)
    if schema != SCHEMA:
        raise FormatError(f"schema {schema!r} is not {SCHEMA!r}", f"{where}: schema")
    clip_id = _field(obj, "clip_id", where)
    if not isinstance(clip_id, str) or not clip_id:
        raise FormatError("must be a non-empty string", f"{where}: clip_id")
    fps = _int(_field(obj, "fps", where), f"{where}: fps", FPS, FPS)
    size = _field(obj, "frame_size", where)
    if not isinstance(size, list) or len(size) != 2:
        raise FormatError(f"must be [width, height], got {size!r}", f"{where}: frame_size")
    w, h = (_int(v, f"{where}: frame_size[{i}]", 1, 100_000) for i, v in enumerate(size))
    num_frames = _int(_field(obj, "num_frames", where), f"{where}: num_frames", 1)
    secs = _field(obj, "seconds", where)
    if not isinstance(secs, list):
        raise FormatError("must be a list of seconds", f"{where}: seconds")
    seconds = tuple(_int(s, f"{where}: seconds[{i}]") for i, s in enumerate(secs))
    if list(seconds) != sorted(set(seconds)):
        raise FormatError("must be ascending without repeats", f"{where}: seconds")
    next_person = _int(_field(obj, "next_person", where), f"{where}: next_person")
    raw_boxes = _field(obj, "boxes", where)
    if not isinstance(raw_boxes, list):
        raise FormatError("must be a list", f"{where}: boxes")
    boxes, seen = [], set()
    for i, rb in enumerate(raw_boxes):
        bw = f"{where}: boxes[{i}]"
        b = _parse_box(rb, bw, (w, h), set(seconds), action_ids)
        if b.key in seen:
            raise FormatError(f"person {b.person} has a second box at second {b.second}", bw)
        if b.person >= next_person:
            raise FormatError(f"person {b.person} is not below next_person {next_person}", bw)
        seen.add(b.key)
        boxes.append(b)
    end = _int(_field(obj, "tracker_ids_end", where), f"{where}: tracker_ids_end", 0, next_person)
    doc = Document(
        clip_id,
        (w, h),
        num_frames,
        seconds,
        fps=fps,
        action_ids=action_ids or frozenset(),
        tracker_ids_end=end,
    )
    return doc.with_boxes(boxes, next_person=next_person)


def _parse_box(
    obj: Any, where: str, size: tuple[int, int], seconds: set[int], action_ids: frozenset[int] | None
) -> Box:
    if not isinstance(obj, dict):
        raise FormatError("must be a JSON object", where)
    extra = sorted(set(obj) - {"person", "second", "box", "edited", "actions", "source", "suggested"})
    if extra:
        raise FormatError(f"unknown fields {extra}", where)
    person = _int(_field(obj, "person", where), f"{where}: person")
    second = _int(_field(obj, "second", where), f"{where}: second")
    if second not in seconds:
        raise FormatError(f"second {second} is not a labelled second {sorted(seconds)}", f"{where}: second")
    box = _field(obj, "box", where)
    if not isinstance(box, list) or len(box) != 4:
        raise FormatError(f"must be [x1, y1, x2, y2], got {box!r}", f"{where}: box")
    for j, v in enumerate(box):
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            raise FormatError(f"must be a finite number, got {v!r}", f"{where}: box[{j}]")
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = size
    if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
        raise FormatError(f"{box} is not a box inside the {w}x{h} frame (x1 < x2, y1 < y2)", f"{where}: box")
    edited = _field(obj, "edited", where)
    if not isinstance(edited, bool):
        raise FormatError(f"must be true or false, got {edited!r}", f"{where}: edited")
    source = _field(obj, "source", where)
    if source not in SOURCES:
        raise FormatError(f"must be one of {list(SOURCES)}, got {source!r}", f"{where}: source")
    actions = _ints(_field(obj, "actions", where), f"{where}: actions", action_ids)
    suggested = _ints(obj.get("suggested", []), f"{where}: suggested", action_ids)
    return Box(person, second, (x1, y1, x2, y2), edited, actions, source, suggested)
