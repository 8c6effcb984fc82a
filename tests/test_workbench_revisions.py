"""The revision stores: the same behaviour from the local folder and from a real S3 server (conftest's
SeaweedFS): numbered revisions, exact reads, a stale base conflicts, history, stream names checked; two
S3Revisions over separate clients (two annotate replicas) racing on one base give one revision."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from avaforge.storage import S3Store
from avaforge.workbench.revisions import (
    Conflict,
    LocalRevisions,
    S3Revisions,
    UnknownRevision,
    delete_prefix,
    job_prefix,
)


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


def follows_the_other_writer(ours, theirs) -> None:  # type: ignore[no-untyped-def]
    """The head is remembered and only later revisions are looked for: one made by another writer (a second
    ``avaforge annotate`` on the folder, another annotate replica) is still seen, and a save on the old head
    conflicts."""
    ours.save("clip-a", 0, b"1", "a", "x")
    assert ours.head("clip-a") == 1
    theirs.save("clip-a", 1, b"2", "b", "x")
    theirs.save("clip-a", 2, b"3", "b", "x")
    with pytest.raises(Conflict) as err:
        ours.save("clip-a", 1, b"stale", "a", "x")  # ours last saw revision 1
    assert err.value.head == 3
    assert ours.head("clip-a") == 3 and ours.read("clip-a", 3) == b"3"


def test_local_head_follows_saves_of_another_process(tmp_path: Path) -> None:
    follows_the_other_writer(LocalRevisions(tmp_path / "revisions"), LocalRevisions(tmp_path / "revisions"))


@pytest.mark.slow
def test_s3_revisions(s3) -> None:  # type: ignore[no-untyped-def]
    _, store = s3
    exercise(S3Revisions(store, "annotate/job-1"))
    follows_the_other_writer(S3Revisions(store, "annotate/job-2"), S3Revisions(store, "annotate/job-2"))


def race(stores: list[S3Revisions], base: int, tag: str) -> list[object]:
    """Every store saves on ``base`` at the same moment (a barrier); what each got (RevisionInfo/Conflict)."""
    barrier = threading.Barrier(len(stores))
    results: list[object] = [None] * len(stores)

    def save(i: int) -> None:
        barrier.wait()
        try:
            results[i] = stores[i].save("clip-a", base, f"{tag} from {i}".encode(), f"r{i}", "x")
        except Conflict as exc:
            results[i] = exc

    threads = [threading.Thread(target=save, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.slow
def test_s3_replicas_racing_on_one_base_give_one_revision_never_an_overwrite(s3) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import CREDS

    _, store = s3

    def replica() -> S3Revisions:  # its own S3 client and its own in-process lock, as another pod has
        return S3Revisions(
            S3Store(store.endpoint, CREDS.access_key, CREDS.secret_key, store.bucket), job_prefix("job-race")
        )

    replicas = [replica() for _ in range(4)]
    for base in range(10):  # 10 rounds: each starts on the revision the last round's winner saved
        results = race(replicas, base, f"round {base}")
        winners = [(i, r) for i, r in enumerate(results) if not isinstance(r, Conflict)]
        assert len(winners) == 1, results
        (i, info), *_ = winners
        assert info.revision == base + 1
        assert all(r.head == base + 1 for r in results if isinstance(r, Conflict))
        # the revision holds the winner's bytes, as every replica reads it
        assert {r.read("clip-a", base + 1) for r in replicas} == {f"round {base} from {i}".encode()}
    history = replicas[0].history("clip-a")
    assert [h.revision for h in history] == list(range(1, 11)) and all(h.edit == "x" for h in history)
    assert delete_prefix(store, job_prefix("job-race")) == 20  # 10 revisions + their 10 history entries
    # gone for a store that opens the job now (the service answers 404 for a deleted job before reaching its
    # app: a store keeps the head it last saw, revisions being removed only with their whole job)
    assert S3Revisions(store, job_prefix("job-race")).head("clip-a") == 0


class HeaderDroppingClient:
    """A fake for the one fault SeaweedFS cannot show: an S3 server that ignores ``If-None-Match``. It passes
    every call to the real client, but sends conditional PUTs without the header."""

    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        self._client = client

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._client, name)

    def _put_object(self, bucket, key, data, headers=None, **kw):  # type: ignore[no-untyped-def]
        headers = {k: v for k, v in (headers or {}).items() if k.lower() != "if-none-match"}
        return self._client._put_object(bucket, key, data, headers=headers, **kw)


@pytest.mark.slow
def test_s3_revisions_refuse_to_save_where_the_server_ignores_conditional_writes(s3) -> None:  # type: ignore[no-untyped-def]
    from avaforge.workbench.revisions import ConditionalWritesUnsupported
    from tests.conftest import CREDS

    _, store = s3
    ignoring = S3Store(store.endpoint, CREDS.access_key, CREDS.secret_key, store.bucket)
    ignoring.client = HeaderDroppingClient(ignoring.client)
    revisions = S3Revisions(ignoring, job_prefix("job-ignoring"))
    with pytest.raises(ConditionalWritesUnsupported, match="ignores If-None-Match"):
        revisions.save("clip-a", 0, b"{}", "kim", "x")
    assert revisions.head("clip-a") == 0
    listed = store.client.list_objects(store.bucket, prefix=job_prefix("job-ignoring") + "/", recursive=True)
    assert [o.object_name for o in listed] == []  # the probe removed its key
