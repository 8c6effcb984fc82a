"""Who labels and who reviews each clip: the assignments of a work folder (embedded) or of a job (service).

A clip's assignment names its annotator and, optionally, its reviewer (principal names: the tokens file's in
the service, ``--annotator`` embedded). They are kept as one revision stream (``revisions.py``) next to the
clips' revisions - ``WORKDIR/annotate/assignments/r000001.json``, or ``annotate/<job>/_meta/assignments/``
in the service's bucket - so every change is written atomically and kept with who made it, and two changes
racing (two owners, two replicas) cannot lose one: the later is retried on the newest.

The role of a caller on a clip (``role``) decides what their saves change: the reviewer's go to the review
pass (stream ``<clip>.review``), the annotator's - or the job owner's or an admin's (``manager``) - to the
clip's labels; anyone else only reads. A clip with no assignment is open to the managers alone. Embedded,
``avaforge annotate --review`` makes the one user the reviewer of every clip without another reviewer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from avaforge.workbench.revisions import Conflict, RevisionStore

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")  # a principal's name as an assignment takes it
STREAM = "assignments"
RETRIES = 5  # a change that keeps meeting newer changes gives up after this many (each one is a real save)
Role = Literal["annotator", "reviewer"]


class AssignmentError(ValueError):
    """An assignment that cannot be made (a bad name, a reviewer who is the annotator)."""


@dataclass(frozen=True)
class Assignment:
    annotator: str
    reviewer: str | None = None

    def __post_init__(self) -> None:
        for what, name in (("annotator", self.annotator), ("reviewer", self.reviewer)):
            if name is not None and not NAME.match(name):
                raise AssignmentError(f"{what} {name!r} is not a name (letters, digits, _.@-; at most 64)")
        if self.reviewer == self.annotator:
            raise AssignmentError(f"{self.annotator} cannot review their own labels: name another reviewer")

    def to_dict(self) -> dict[str, str | None]:
        return {"annotator": self.annotator, "reviewer": self.reviewer}


def role(
    assignment: Assignment | None, who: str, manager: bool, act_as_reviewer: bool = False
) -> Role | None:
    """What ``who``'s saves on the clip change: its review pass, its labels, or nothing (None: read only).
    ``manager``: the job's owner or an admin (embedded: the one user); ``act_as_reviewer``: embedded
    ``--review``, the user reviews every clip that has no other reviewer."""
    if act_as_reviewer:
        return "reviewer" if assignment is None or assignment.reviewer in (None, who) else None
    if assignment is not None and assignment.reviewer == who:
        return "reviewer"
    if manager or (assignment is not None and assignment.annotator == who):
        return "annotator"
    return None


class Assignments:
    """Clip id -> Assignment, over a revision store (each change is one revision of the stream)."""

    def __init__(self, store: RevisionStore) -> None:
        self.store = store
        self._cached: tuple[int, dict[str, Assignment]] = (0, {})

    def read(self) -> dict[str, Assignment]:
        """The newest assignments (re-read only when a newer revision exists)."""
        head = self.store.head(STREAM)
        if head != self._cached[0]:
            self._cached = (head, self._parse(head))
        return self._cached[1]

    def _parse(self, head: int) -> dict[str, Assignment]:
        if head == 0:
            return {}
        raw = json.loads(self.store.read(STREAM, head))
        return {clip: Assignment(a["annotator"], a.get("reviewer")) for clip, a in raw["clips"].items()}

    def people(self) -> set[str]:
        return {n for a in self.read().values() for n in (a.annotator, a.reviewer) if n is not None}

    def set(self, clip_id: str, assignment: Assignment | None, author: str) -> dict[str, Assignment]:
        """Assign ``clip_id`` (None: remove its assignment) as ``author``; the assignments after it."""
        for _ in range(RETRIES):
            head = self.store.head(STREAM)
            clips = dict(self._parse(head))
            if assignment is None:
                clips.pop(clip_id, None)
            else:
                clips[clip_id] = assignment
            data = {"clips": {c: a.to_dict() for c, a in sorted(clips.items())}}
            try:
                self.store.save(STREAM, head, json.dumps(data, indent=1).encode(), author, "assign")
            except Conflict:
                continue  # another change landed first: apply this one to it
            self._cached = (head + 1, clips)
            return clips
        raise Conflict(STREAM, head, self.store.head(STREAM))
