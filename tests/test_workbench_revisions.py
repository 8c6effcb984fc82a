"""The revision stores: the same behaviour from the local folder and from a real S3 server (conftest's
SeaweedFS): numbered revisions, exact reads, a stale base conflicts, history, stream names checked."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from avaforge.workbench.revisions import Conflict, LocalRevisions, S3Revisions, UnknownRevision


def exercise(store) -> None:  # type: ignore[no-untyped-def]
    assert store.head("clip-a") == 0 and store.history("clip-a") == []
    first = store.save("clip-a", 0, b'{"n": 1}', "kim", "toggle_action")
    assert (first.revision, first.base, first.author, first.size) == (1, 0, "kim", 8)
    store.save("clip-a", 1, b'{"n": 2}', "kim", "merge")
    with pytest.raises(Conflict) as err:
        store.save("clip-a", 1, b'{"n": "stale"}', "lee", "toggle_action")
    assert err.value.head == 2
    assert store.read("clip-a", 1) == b'{"n": 1}' and store.read("clip-a", 2) == b'{"n": 2}'
    with pytest.raises(UnknownRevision):
        store.read("clip-a", 3)
    assert [(h.revision, h.edit) for h in store.history("clip-a")] == [(1, "toggle_action"), (2, "merge")]
    assert store.head("clip-a.review") == 0  # another stream
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(ValueError):
            store.head(bad)


def test_local_revisions(tmp_path: Path) -> None:
    exercise(LocalRevisions(tmp_path / "revisions"))


def test_local_concurrent_saves_on_one_base_give_one_revision(tmp_path: Path) -> None:
    store = LocalRevisions(tmp_path / "revisions")
    results: list[object] = []

    def save(i: int) -> None:
        try:
            results.append(store.save("clip-a", 0, f"doc {i}".encode(), "a", "x"))
        except Conflict as exc:
            results.append(exc)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(not isinstance(r, Conflict) for r in results) == 1
    assert store.head("clip-a") == 1 and len(store.history("clip-a")) == 1


def test_local_head_follows_saves_of_another_process(tmp_path: Path) -> None:
    """The head is remembered and only later revisions are looked for: one made by another writer of the
    folder (a second ``avaforge annotate`` on it) is still seen, and a save on the old head conflicts."""
    ours, theirs = LocalRevisions(tmp_path / "revisions"), LocalRevisions(tmp_path / "revisions")
    ours.save("clip-a", 0, b"1", "a", "x")
    assert ours.head("clip-a") == 1
    theirs.save("clip-a", 1, b"2", "b", "x")
    theirs.save("clip-a", 2, b"3", "b", "x")
    with pytest.raises(Conflict) as err:
        ours.save("clip-a", 1, b"stale", "a", "x")  # ours last saw revision 1
    assert err.value.head == 3
    assert ours.head("clip-a") == 3 and ours.read("clip-a", 3) == b"3"


@pytest.mark.slow
def test_s3_revisions(s3) -> None:  # type: ignore[no-untyped-def]
    _, store = s3
    exercise(S3Revisions(store, "annotate/job-1"))
