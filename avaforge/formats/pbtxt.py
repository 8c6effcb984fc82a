"""``action_list.pbtxt``: the label map mmaction2 reads line by line.

mmaction2's ``read_labelmap`` only recognises lines that start with exactly two spaces followed by
``name:`` / ``id:`` (or ``label_id:``) and takes the name between the first pair of double quotes, so the
layout below is a contract, not a style. Names therefore must not contain '"' or line breaks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from avaforge.formats.errors import FormatError, Problem, Severity, read_text
from avaforge.fsutil import atomic_write_bytes

_ITEM = 'item {{\n  name: "{name}"\n  id: {id}\n}}\n'
_FORBIDDEN = re.compile(r'["\r\n\\]')


def check_action_name(name: str, where: str | None = None) -> str:
    if not name.strip():
        raise FormatError("empty action name", where)
    if _FORBIDDEN.search(name):
        raise FormatError(f"action name {name!r} contains a quote, backslash or line break", where)
    return name


def format_pbtxt(items: Iterable[tuple[int, str]]) -> str:
    """Render ``(id, name)`` pairs, ordered by id."""
    out = []
    seen: set[int] = set()
    for action_id, name in sorted(items):
        if action_id in seen:
            raise FormatError(f"duplicate action id {action_id}")
        seen.add(action_id)
        check_action_name(name)
        out.append(_ITEM.format(name=name, id=action_id))
    return "".join(out)


def write_pbtxt(path: str | Path, items: Iterable[tuple[int, str]]) -> None:
    atomic_write_bytes(path, format_pbtxt(items).encode("utf-8"))


def parse_pbtxt(text: str, where: str) -> tuple[list[tuple[int, str]], list[Problem]]:
    """Parse like mmaction2's line parser, and also report what that parser would silently skip."""
    items: list[tuple[int, str]] = []
    problems: list[Problem] = []
    name: str | None = None
    for n, line in enumerate(text.splitlines(), start=1):
        loc = f"{where}:{n}"
        stripped = line.strip()
        if line.startswith("  name:"):
            parts = line.split('"')
            if len(parts) < 3:
                problems.append(Problem(Severity.ERROR, "pbtxt-name", "name is not in double quotes", loc))
                continue
            name = parts[1]
        elif line.startswith("  id:") or line.startswith("  label_id:"):
            try:
                action_id = int(stripped.split(" ")[-1])
            except ValueError:
                problems.append(
                    Problem(Severity.ERROR, "pbtxt-id", f"id line {stripped!r} is not an integer", loc)
                )
                continue
            if name is None:
                problems.append(
                    Problem(Severity.ERROR, "pbtxt-id", f"id {action_id} without a name before it", loc)
                )
                continue
            items.append((action_id, name))
            name = None
        elif stripped.startswith(("name:", "id:", "label_id:")):
            problems.append(
                Problem(
                    Severity.ERROR,
                    "pbtxt-indent",
                    f"{stripped.split(':')[0]!r} must be indented by exactly two spaces (mmaction2 skips it)",
                    loc,
                )
            )
        elif stripped not in ("", "item {", "}"):
            problems.append(
                Problem(Severity.WARNING, "pbtxt-unknown", f"unrecognised line {stripped!r}", loc)
            )
    ids = [i for i, _ in items]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(
            Problem(Severity.ERROR, "pbtxt-duplicate-id", f"action id {dup} appears twice", where)
        )
    if not items:
        problems.append(Problem(Severity.ERROR, "pbtxt-empty", "no actions defined", where))
    return items, problems


def read_pbtxt(path: str | Path) -> list[tuple[int, str]]:
    items, problems = parse_pbtxt(read_text(path), str(path))
    errors = [p for p in problems if p.severity is Severity.ERROR]
    if errors:
        raise FormatError(errors[0].message, errors[0].where)
    return items
