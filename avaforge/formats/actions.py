"""The user's action list: groups of actions with ids 1..K, which drive both VIA attributes and the pbtxt.

File (YAML or JSON)::

    groups:
      body: {exclusive: true, actions: [stand, sit, walk]}
      head: [talk, {name: "hand up", id: 6}]

Ids are assigned in order of appearance; an action may pin its id (``{name, id}``) so that adding an
action to an earlier group later does not renumber existing ones. The final ids must be exactly 1..K.
A group written as a mapping may be ``exclusive`` (AVA's pose: exactly one action of it per labelled box);
the plain list form is a multi-select group (0..n actions per box).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from avaforge.formats.errors import FormatError, read_text
from avaforge.formats.pbtxt import check_action_name


@dataclass(frozen=True)
class Action:
    id: int
    name: str


@dataclass(frozen=True)
class ActionGroup:
    name: str
    actions: tuple[Action, ...]
    exclusive: bool = False

    def ids(self) -> frozenset[int]:
        return frozenset(a.id for a in self.actions)


@dataclass(frozen=True)
class ActionList:
    groups: tuple[ActionGroup, ...]

    def __iter__(self) -> Iterator[Action]:
        for group in self.groups:
            yield from group.actions

    def __len__(self) -> int:
        return sum(len(g.actions) for g in self.groups)

    def by_id(self) -> dict[int, Action]:
        return {a.id: a for a in self}

    def by_name(self) -> dict[str, Action]:
        return {a.name: a for a in self}

    def pbtxt_items(self) -> list[tuple[int, str]]:
        return sorted((a.id, a.name) for a in self)

    def to_dict(self) -> dict[str, Any]:
        """The file form; a multi-select group stays a plain list (so existing lists keep their bytes)."""
        groups: dict[str, Any] = {}
        for g in self.groups:
            items = [{"name": a.name, "id": a.id} for a in g.actions]
            groups[g.name] = {"exclusive": True, "actions": items} if g.exclusive else items
        return {"groups": groups}

    @property
    def exclusive_groups(self) -> tuple[ActionGroup, ...]:
        return tuple(g for g in self.groups if g.exclusive)

    def exclusive_violations(self, action_ids: Iterable[int]) -> list[str]:
        """The one rule for exclusive groups: a labelled box has exactly one action of each. One message per
        violated group, e.g. "group 'body' needs exactly one action, got 2 (stand, walk)"."""
        ids = set(action_ids)
        out = []
        for g in self.exclusive_groups:
            chosen = [a.name for a in g.actions if a.id in ids]
            if len(chosen) != 1:
                got = f"{len(chosen)} ({', '.join(chosen)})" if chosen else "none"
                out.append(f"group {g.name!r} needs exactly one action, got {got}")
        return out

    @classmethod
    def from_obj(cls, obj: Any, where: str = "action list") -> ActionList:
        if not isinstance(obj, dict) or "groups" not in obj:
            raise FormatError("expected a mapping with a 'groups' key (group name -> list of actions)", where)
        groups = obj["groups"]
        if not isinstance(groups, dict) or not groups:
            raise FormatError("'groups' must be a non-empty mapping of group name -> list of actions", where)
        pinned: dict[int, str] = {}
        entries: list[tuple[str, str, int | None]] = []
        exclusive: set[str] = set()
        for gname, value in groups.items():
            gwhere = f"{where}: group {gname!r}"
            if not isinstance(gname, str) or not gname.strip():
                raise FormatError("group names must be non-empty strings", gwhere)
            check_action_name(gname, gwhere)
            actions, is_exclusive = _group_body(value, gwhere)
            if is_exclusive:
                exclusive.add(gname)
            for item in actions:
                name, pin = _entry(item, gwhere)
                if pin is not None:
                    if pin in pinned:
                        raise FormatError(f"id {pin} given to both {pinned[pin]!r} and {name!r}", gwhere)
                    pinned[pin] = name
                entries.append((gname, name, pin))
        names = [n for _, n, _ in entries]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise FormatError(f"action names must be unique, repeated: {dups}", where)
        free = (i for i in range(1, len(entries) + 1) if i not in pinned)
        assigned = [(g, n, pin if pin is not None else next(free)) for g, n, pin in entries]
        ids = sorted(i for _, _, i in assigned)
        if ids != list(range(1, len(entries) + 1)):
            raise FormatError(
                f"ids must be exactly 1..{len(entries)}; pinned ids {sorted(pinned)} leave gaps", where
            )
        out: dict[str, list[Action]] = {}
        for gname, name, action_id in assigned:
            out.setdefault(gname, []).append(Action(action_id, name))
        return cls(tuple(ActionGroup(g, tuple(a), g in exclusive) for g, a in out.items()))

    @classmethod
    def load(cls, path: str | Path) -> ActionList:
        p = Path(path)
        text = read_text(p)
        try:
            obj = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise FormatError(f"cannot parse: {exc}", str(p)) from None
        return cls.from_obj(obj, str(p))

    @classmethod
    def from_flat(cls, names: list[str], group: str = "actions") -> ActionList:
        return cls.from_obj({"groups": {group: list(names)}})


def _group_body(value: Any, where: str) -> tuple[list[Any], bool]:
    """A group's actions and whether it is exclusive: ``[a, b]`` or ``{exclusive: bool, actions: [a, b]}``."""
    if isinstance(value, dict):
        unknown = sorted(str(k) for k in set(value) - {"exclusive", "actions"})
        if unknown:
            raise FormatError(f"unknown keys {unknown}; a group is a list or {{exclusive, actions}}", where)
        if "actions" not in value:
            raise FormatError("a group written as a mapping needs an 'actions' list", where)
        flag = value.get("exclusive", False)
        if not isinstance(flag, bool):
            raise FormatError(f"'exclusive' must be true or false, got {flag!r}", where)
        actions = value["actions"]
    else:
        actions, flag = value, False
    if not isinstance(actions, list) or not actions:
        raise FormatError("must be a non-empty list of actions", where)
    return actions, flag


def _entry(item: Any, where: str) -> tuple[str, int | None]:
    if isinstance(item, str):
        return check_action_name(item, where), None
    if isinstance(item, dict) and set(item) <= {"name", "id"} and "name" in item:
        name = item["name"]
        pin = item.get("id")
        if not isinstance(name, str):
            raise FormatError(f"action name {name!r} is not a string", where)
        if pin is not None and (not isinstance(pin, int) or isinstance(pin, bool) or pin < 1):
            raise FormatError(f"id of {name!r} must be an integer >= 1, got {pin!r}", where)
        return check_action_name(name, where), pin
    raise FormatError(f"action entry {item!r} must be a name or {{name: ..., id: ...}}", where)
