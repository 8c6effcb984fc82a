"""Clip assignments (avaforge/workbench/assignments.py) over a real revision folder: names checked, each
change one revision with its author, two stores racing keep both changes, and the role rules: the reviewer
saves the review pass, the annotator or a manager the labels, anyone else nothing; an unassigned clip is the
managers' alone; embedded --review reviews every clip without another reviewer."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from avaforge.workbench.assignments import Assignment, AssignmentError, Assignments, role
from avaforge.workbench.revisions import LocalRevisions


def test_assignments_are_revisions_with_their_author(tmp_path: Path) -> None:
    store = Assignments(LocalRevisions(tmp_path))
    assert store.read() == {} and store.people() == set()
    store.set("clip-a", Assignment("kim", "lee"), "owner")
    store.set("clip-b", Assignment("kim"), "owner")
    assert store.read() == {"clip-a": Assignment("kim", "lee"), "clip-b": Assignment("kim", None)}
    assert store.people() == {"kim", "lee"}
    store.set("clip-a", None, "admin")  # unassigned: open to the owner again
    assert Assignments(LocalRevisions(tmp_path)).read() == {"clip-b": Assignment("kim", None)}  # as saved
    history = LocalRevisions(tmp_path).history("assignments")
    assert [(h.revision, h.author, h.edit) for h in history] == [
        (1, "owner", "assign"),
        (2, "owner", "assign"),
        (3, "admin", "assign"),
    ]
    assert (tmp_path / "assignments" / "r000003.json").is_file()


@pytest.mark.parametrize(
    ("annotator", "reviewer", "why"),
    [
        ("../etc", None, "not a name"),
        ("kim", "", "not a name"),
        ("a" * 65, None, "not a name"),
        ("kim", "kim", "cannot review their own labels"),
    ],
)
def test_bad_assignments_say_why(annotator: str, reviewer: str | None, why: str) -> None:
    with pytest.raises(AssignmentError, match=why):
        Assignment(annotator, reviewer)


def test_two_stores_racing_keep_both_changes(tmp_path: Path) -> None:
    """Two owners (or two replicas) assigning different clips at once: a change that meets a newer one is
    made again on it, so neither is lost."""
    stores = [Assignments(LocalRevisions(tmp_path)) for _ in range(4)]
    barrier = threading.Barrier(len(stores))

    def assign(i: int) -> None:
        barrier.wait()
        stores[i].set(f"clip-{i}", Assignment(f"person-{i}"), f"owner-{i}")

    threads = [threading.Thread(target=assign, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stores[0].read() == {f"clip-{i}": Assignment(f"person-{i}") for i in range(4)}
    assert LocalRevisions(tmp_path).head("assignments") == 4


def test_roles() -> None:
    both = Assignment("kim", "lee")
    assert role(both, "kim", manager=False) == "annotator"
    assert role(both, "lee", manager=False) == "reviewer"
    assert role(both, "bob", manager=False) is None  # reads only
    assert role(both, "owner", manager=True) == "annotator"  # the owner adjudicates: the clip's labels
    assert role(Assignment("kim"), "lee", manager=False) is None
    assert role(None, "kim", manager=False) is None  # unassigned: the owner's alone
    assert role(None, "owner", manager=True) == "annotator"
    # embedded --review: the one user reviews every clip that has no other reviewer
    assert role(None, "ann", manager=True, act_as_reviewer=True) == "reviewer"
    assert role(Assignment("kim"), "ann", manager=True, act_as_reviewer=True) == "reviewer"
    assert role(both, "ann", manager=True, act_as_reviewer=True) is None
    assert role(both, "lee", manager=True, act_as_reviewer=True) == "reviewer"
