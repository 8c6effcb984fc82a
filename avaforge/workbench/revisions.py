"""Each save of a clip's document is a new numbered revision; a save names its base, a stale base conflicts.

A stream is one clip's document ("<clip>") or a reviewer's pass over it ("<clip>.review"). Revisions are
numbered 1, 2, ... per stream; ``save(stream, base, data, meta)`` writes revision base+1 only while base is
still the newest, else raises ``Conflict`` (the API answers 409); revision 0 means "nothing saved yet".
``read`` gives exactly the bytes saved. ``history`` lists every revision's metadata (who, when, what edit).

``LocalRevisions``: ``<root>/<stream>/r000001.json`` ... (each written atomically, never overwritten: the
new file is hard-linked into place, which fails if another writer got there first) and ``history.jsonl``.
``S3Revisions``: the same layout as keys under a prefix, over ``avaforge.storage.S3Store``'s client. A
revision is claimed by writing its object with ``If-None-Match: *`` (S3's conditional write: the server
refuses it with 412 when the key exists), so two processes - two replicas of the annotate service - racing
on one base give exactly one revision and one ``Conflict``, never an overwrite. SeaweedFS (``make up``),
MinIO and AWS S3 honour it; each ``S3Revisions`` checks once that its server does and refuses to save
(``ConditionalWritesUnsupported``) where it does not.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from avaforge.fsutil import atomic_write_bytes

ANNOTATE_PREFIX = "annotate"  # the service's files of job J (revisions, assignments) are keys annotate/J/...
STREAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


class Conflict(Exception):
    """A save whose base revision is no longer the newest."""

    def __init__(self, stream: str, base: int, head: int) -> None:
        super().__init__(f"{stream}: revision {base} is stale, the newest is {head}; reload")
        self.base, self.head = base, head


class UnknownRevision(LookupError):
    pass


class ConditionalWritesUnsupported(RuntimeError):
    """The S3 server ignores ``If-None-Match``: saves from two processes could overwrite each other."""


@dataclass(frozen=True)
class RevisionInfo:
    revision: int
    base: int
    time: float
    author: str
    edit: str  # what the save did ("toggle_action", "undo", ...)
    size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RevisionStore(Protocol):
    def head(self, stream: str) -> int: ...

    def read(self, stream: str, revision: int) -> bytes: ...

    def save(self, stream: str, base: int, data: bytes, author: str, edit: str) -> RevisionInfo: ...

    def history(self, stream: str) -> list[RevisionInfo]: ...


def check_stream(stream: str) -> str:
    if not STREAM.match(stream) or ".." in stream:
        raise ValueError(f"{stream!r} is not a revision stream name")
    return stream


def _name(revision: int) -> str:
    return f"r{revision:06d}.json"


class _KnownHeads:
    """The newest revision of each stream: revisions are never removed (but with their whole job), so the last
    head seen is a lower bound; a stream is listed once, later only the revision after it is looked for (one
    ``stat`` or HEAD request while nobody else saved, not a listing that grows with every revision)."""

    def __init__(self) -> None:
        self._heads: dict[str, int] = {}

    def _listed_head(self, stream: str) -> int: ...

    def _has(self, stream: str, revision: int) -> bool: ...

    def head(self, stream: str) -> int:
        head = self._heads.get(stream)
        if head is None:
            head = self._listed_head(stream)
        while self._has(stream, head + 1):
            head += 1
        self._heads[stream] = head
        return head


class LocalRevisions(_KnownHeads):
    def __init__(self, root: str | Path) -> None:
        super().__init__()
        self.root = Path(root)
        self._lock = threading.Lock()

    def _dir(self, stream: str) -> Path:
        return self.root / check_stream(stream)

    def _listed_head(self, stream: str) -> int:
        folder = self._dir(stream)
        if not folder.is_dir():
            return 0
        nums = [int(p.name[1:7]) for p in folder.glob("r[0-9][0-9][0-9][0-9][0-9][0-9].json")]
        return max(nums, default=0)

    def _has(self, stream: str, revision: int) -> bool:
        return (self._dir(stream) / _name(revision)).is_file()

    def read(self, stream: str, revision: int) -> bytes:
        path = self._dir(stream) / _name(revision)
        if revision < 1 or not path.is_file():
            raise UnknownRevision(f"{stream}: no revision {revision}")
        return path.read_bytes()

    @contextmanager
    def _locked(self, folder: Path) -> Iterator[None]:
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock, open(folder / ".lock", "a+b") as fh:  # threads here, processes via flock
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def save(self, stream: str, base: int, data: bytes, author: str, edit: str) -> RevisionInfo:
        folder = self._dir(stream)
        with self._locked(folder):
            head = self.head(stream)
            if base != head:
                raise Conflict(stream, base, head)
            info = RevisionInfo(head + 1, base, time.time(), author, edit, len(data))
            tmp = folder / f".{_name(info.revision)}.partial"
            atomic_write_bytes(tmp, data)
            try:
                os.link(tmp, folder / _name(info.revision))  # fails if the revision exists: never overwritten
            except FileExistsError:
                raise Conflict(stream, base, self.head(stream)) from None
            finally:
                tmp.unlink(missing_ok=True)
            with open(folder / "history.jsonl", "ab") as fh:
                fh.write(json.dumps(info.to_dict()).encode() + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
        return info

    def history(self, stream: str) -> list[RevisionInfo]:
        path = self._dir(stream) / "history.jsonl"
        if not path.is_file():
            return []
        return [RevisionInfo(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


class S3Revisions(_KnownHeads):
    """The same streams as keys ``<prefix>/<stream>/r000001.json`` and ``.../history/r000001.json``."""

    def __init__(self, store: Any, prefix: str) -> None:  # store: avaforge.storage.S3Store
        super().__init__()
        self.store, self.prefix = store, prefix.strip("/")
        self._lock = threading.Lock()  # this process's savers wait here instead of conflicting at S3
        self._conditional_checked = False

    def _key(self, stream: str, *parts: str) -> str:
        return "/".join([self.prefix, check_stream(stream), *parts])

    def _list(self, stream: str, sub: str = "") -> list[str]:
        prefix = self._key(stream, sub) if sub else self._key(stream) + "/"
        objs = self.store._call(
            prefix, lambda: list(self.store.client.list_objects(self.store.bucket, prefix=prefix))
        )
        return sorted(o.object_name for o in objs if not o.is_dir)  # SeaweedFS lists emptied folders

    def _get(self, key: str) -> bytes:
        def read() -> bytes:
            resp = self.store.client.get_object(self.store.bucket, key)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        return self.store._call(key, read)

    def _put(self, key: str, data: bytes) -> None:
        self.store._call(
            key, lambda: self.store.client.put_object(self.store.bucket, key, io.BytesIO(data), len(data))
        )

    def _create(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if it does not exist (S3 ``If-None-Match: *``); False if it does."""
        # minio's public put_object would send the header as user metadata (x-amz-meta-...); 412: the key
        # exists; 409: AWS's answer while another conditional write of it is in flight
        return _s3_yes(
            self.store,
            key,
            lambda: self.store.client._put_object(
                self.store.bucket,
                key,
                data,
                headers={"If-None-Match": "*", "Content-Type": "application/json"},
            ),
            no=("PreconditionFailed", "ConditionalRequestConflict"),
        )

    def _check_conditional_writes(self) -> None:
        """Once: a second conditional write of a probe key must be refused, else saves are not safe."""
        if self._conditional_checked:
            return
        key = f"{self.prefix}/_probe/{uuid.uuid4().hex}"
        try:
            honoured = self._create(key, b"{}") and not self._create(key, b"{}")
        finally:
            self.store._call(key, lambda: self.store.client.remove_object(self.store.bucket, key))
        if not honoured:
            raise ConditionalWritesUnsupported(
                f"S3 server {self.store.endpoint} ignores If-None-Match on PUT: workbench revisions could be "
                "overwritten; use an S3 server with conditional writes (SeaweedFS, MinIO, AWS S3)"
            )
        self._conditional_checked = True

    def _listed_head(self, stream: str) -> int:
        names = [k.rsplit("/", 1)[1] for k in self._list(stream)]
        return max((int(n[1:7]) for n in names if re.fullmatch(r"r\d{6}\.json", n)), default=0)

    def _has(self, stream: str, revision: int) -> bool:
        key = self._key(stream, _name(revision))
        return _s3_yes(
            self.store,
            key,
            lambda: self.store.client.stat_object(self.store.bucket, key),
            no=("NoSuchKey", "NotFound"),
        )

    def read(self, stream: str, revision: int) -> bytes:
        from avaforge.storage import StorageError

        try:
            return self._get(self._key(stream, _name(revision)))
        except StorageError:
            raise UnknownRevision(f"{stream}: no revision {revision}") from None

    def save(self, stream: str, base: int, data: bytes, author: str, edit: str) -> RevisionInfo:
        self._check_conditional_writes()
        with self._lock:
            head = self.head(stream)
            if base != head:
                raise Conflict(stream, base, head)
            info = RevisionInfo(head + 1, base, time.time(), author, edit, len(data))
            if not self._create(self._key(stream, _name(info.revision)), data):  # another process won
                raise Conflict(stream, base, self.head(stream))
            # only the winner writes the entry; a crash before it leaves a revision without one (see history)
            self._put(self._key(stream, "history", _name(info.revision)), json.dumps(info.to_dict()).encode())
        return info

    def history(self, stream: str) -> list[RevisionInfo]:
        entries = {}
        for key in self._list(stream, "history/"):
            info = RevisionInfo(**json.loads(self._get(key)))
            entries[info.revision] = info
        out = []
        for n in range(1, self.head(stream) + 1):  # a revision whose entry was lost is still history
            lost = n not in entries
            out.append(
                entries[n]
                if not lost
                else RevisionInfo(n, n - 1, 0.0, "", "unknown", len(self.read(stream, n)))
            )
        return out


def _s3_yes(store: Any, key: str, call: Callable[[], object], no: tuple[str, ...]) -> bool:
    """Run an S3 call through the store's error mapping: True when it succeeds, False when S3 answers one of
    the error codes ``no`` (the expected "no": the key exists, is missing ...); other errors are raised."""
    from minio.error import S3Error

    def run() -> bool:
        try:
            call()
        except S3Error as exc:
            if exc.code in no:
                return False
            raise
        return True

    return bool(store._call(key, run))


def job_prefix(job_id: str) -> str:
    """Where the annotate service keeps a job's workbench files (revisions, assignments) in the bucket."""
    return f"{ANNOTATE_PREFIX}/{job_id}"


def delete_prefix(store: Any, prefix: str) -> int:  # store: avaforge.storage.S3Store
    """Remove every object under ``prefix/`` (S3 batch deletes); how many there were."""
    from minio.deleteobjects import DeleteObject

    from avaforge.storage import StorageError

    prefix = prefix.strip("/") + "/"
    keys = store._call(
        prefix,
        lambda: [
            o.object_name for o in store.client.list_objects(store.bucket, prefix=prefix, recursive=True)
        ],
    )
    errors = store._call(
        prefix, lambda: list(store.client.remove_objects(store.bucket, [DeleteObject(k) for k in keys]))
    )
    if errors:
        raise StorageError(f"{prefix}: {len(errors)} objects not deleted, e.g. {errors[0]}")
    return len(keys)
