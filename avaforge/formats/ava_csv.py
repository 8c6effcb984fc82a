"""AVA annotation csv (``train.csv``/``val.csv``) and excluded-timestamps csv.

Row layout (no header): ``video_id,timestamp,x1,y1,x2,y2,action_id,person_id``. Boxes are normalised to
[0, 1] and written with 3 decimals as AVA does; the timestamp is an integer second written with 4 digits
(AVA's ``0902``); mmaction2 parses both with ``int()``/``float()`` and keys proposals by
``f"{video_id},{timestamp:04d}"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from avaforge.formats.errors import FormatError, Problem, Severity, read_text
from avaforge.fsutil import atomic_write_bytes

# AVA ids look like "-5KQ66BBWC4" or "_-Z6wFjXtGQ"; users bring names like "cam_01.part2". A video id is
# a rawframes directory name and a csv/proposal-key field, so ',' '/' whitespace and a leading '.' are out.
_VIDEO_ID = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}")

AVA_FIELDS = 8


def check_video_id(video_id: str, where: str | None = None) -> str:
    """Return ``video_id`` if it is usable as a directory name and csv field, else raise FormatError."""
    if not _VIDEO_ID.fullmatch(video_id):
        raise FormatError(
            f"invalid video id {video_id!r}: use 1-128 of A-Z a-z 0-9 _ - . (not starting with '.')", where
        )
    return video_id


def video_id_from_filename(name: str) -> str:
    """Derive a valid video id from a file name: the stem with every other character replaced by '_'."""
    stem = Path(name).stem or "video"
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]", "_", stem).lstrip(".") or "video"
    return check_video_id(cleaned[:128])


@dataclass(frozen=True, order=True)
class AvaRow:
    """One (person, action) at one keyframe; several rows share a box when a person does several actions."""

    video_id: str
    timestamp: int
    x1: float
    y1: float
    x2: float
    y2: float
    action_id: int
    person_id: int

    @property
    def key(self) -> str:
        """The dense-proposals key of this row's keyframe."""
        return proposal_key(self.video_id, self.timestamp)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


def proposal_key(video_id: str, timestamp: int) -> str:
    return f"{video_id},{timestamp:04d}"


def format_row(row: AvaRow) -> str:
    return (
        f"{row.video_id},{row.timestamp:04d},{row.x1:.3f},{row.y1:.3f},{row.x2:.3f},{row.y2:.3f},"
        f"{row.action_id},{row.person_id}"
    )


def check_row(row: AvaRow, where: str = "") -> list[Problem]:
    """Semantic checks of one row that every writer must pass (validator reuses them)."""
    problems: list[Problem] = []

    def err(code: str, msg: str) -> None:
        problems.append(Problem(Severity.ERROR, code, msg, where))

    try:
        check_video_id(row.video_id)
    except FormatError as exc:
        err("bad-video-id", exc.message)
    if row.timestamp < 0:
        err("bad-timestamp", f"negative timestamp {row.timestamp}")
    coords = (row.x1, row.y1, row.x2, row.y2)
    if any(not (0.0 <= c <= 1.0) for c in coords):
        err("box-out-of-range", f"box {coords} not within [0, 1]")
    if not (row.x1 < row.x2 and row.y1 < row.y2):
        err("box-inverted", f"box {coords} has x1>=x2 or y1>=y2")
    if row.action_id < 1:
        err("bad-action-id", f"action id {row.action_id} < 1 (ids start at 1; 0 is background)")
    if row.person_id < 0:
        err("bad-person-id", f"person id {row.person_id} (e.g. an untracked -1) is not a valid id")
    return problems


def write_rows(path: str | Path, rows: Iterable[AvaRow]) -> None:
    """Write rows sorted by (video, second, person, action) after checking each; raises on a bad row."""
    ordered = sorted(rows, key=lambda r: (r.video_id, r.timestamp, r.person_id, r.action_id, r.box))
    lines = []
    for i, row in enumerate(ordered):
        bad = check_row(row, f"row {i}")
        if bad:
            raise FormatError(bad[0].message, f"{path} ({row.video_id},{row.timestamp:04d})")
        lines.append(format_row(row) + "\n")
    _atomic_write_text(Path(path), "".join(lines))


def parse_rows(text: str, where: str) -> tuple[list[AvaRow], list[Problem]]:
    """Parse csv text the way mmaction2 does, collecting every syntax problem with its line number."""
    rows: list[AvaRow] = []
    problems: list[Problem] = []
    lines = text.splitlines()
    for n, line in enumerate(lines, start=1):
        loc = f"{where}:{n}"
        if not line.strip():
            problems.append(Problem(Severity.ERROR, "blank-line", "blank line (mmaction2 fails on it)", loc))
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != AVA_FIELDS:
            hint = " (truncated file?)" if n == len(lines) and not text.endswith("\n") else ""
            problems.append(
                Problem(
                    Severity.ERROR, "field-count", f"{len(fields)} fields, expected {AVA_FIELDS}{hint}", loc
                )
            )
            continue
        try:
            row = AvaRow(
                video_id=fields[0],
                timestamp=_int(fields[1], "timestamp"),
                x1=_float(fields[2], "x1"),
                y1=_float(fields[3], "y1"),
                x2=_float(fields[4], "x2"),
                y2=_float(fields[5], "y2"),
                action_id=_int(fields[6], "action_id"),
                person_id=_int(fields[7], "person_id"),
            )
        except FormatError as exc:
            problems.append(Problem(Severity.ERROR, "bad-field", exc.message, loc))
            continue
        rows.append(row)
    return rows, problems


def read_rows(path: str | Path) -> list[AvaRow]:
    """Read an annotation csv strictly: the first syntax problem raises FormatError naming file and line."""
    rows, problems = parse_rows(read_text(path), str(path))
    if problems:
        raise FormatError(problems[0].message, problems[0].where)
    return rows


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise FormatError(f"{name} {value!r} is not an integer") from None


def _float(value: str, name: str) -> float:
    try:
        out = float(value)
    except ValueError:
        raise FormatError(f"{name} {value!r} is not a number") from None
    if out != out or out in (float("inf"), float("-inf")):
        raise FormatError(f"{name} {value!r} is not finite")
    return out


# ---- excluded timestamps: "video_id,timestamp" -------------------------------------------------------------


def write_excluded(path: str | Path, entries: Iterable[tuple[str, int]]) -> None:
    lines = []
    for video_id, ts in sorted(set(entries)):
        check_video_id(video_id, str(path))
        lines.append(f"{video_id},{ts:04d}\n")
    _atomic_write_text(Path(path), "".join(lines))


def parse_excluded(text: str, where: str) -> tuple[list[tuple[str, int]], list[Problem]]:
    out: list[tuple[str, int]] = []
    problems: list[Problem] = []
    for n, line in enumerate(text.splitlines(), start=1):
        loc = f"{where}:{n}"
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 2:
            problems.append(Problem(Severity.ERROR, "field-count", f"{len(fields)} fields, expected 2", loc))
            continue
        try:
            out.append((fields[0], _int(fields[1], "timestamp")))
        except FormatError as exc:
            problems.append(Problem(Severity.ERROR, "bad-field", exc.message, loc))
    return out, problems


def read_excluded(path: str | Path) -> list[tuple[str, int]]:
    entries, problems = parse_excluded(read_text(path), str(path))
    if problems:
        raise FormatError(problems[0].message, problems[0].where)
    return entries


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
