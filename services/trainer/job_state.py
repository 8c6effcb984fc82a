"""A PyTorchJob's state in S3, the only thing its pods and the trainer service share.

``train-jobs/<job>/spec.json``   written by the trainer service: dataset, preset, iters
``train-jobs/<job>/state.json``  written by the Master pod: progress (iteration, loss), the last checkpoint
                                 (content-addressed under ``train-jobs/<job>/``) and, at the end, the result
Checkpoints go to S3 as mmengine saves them, so a pod that is lost (node gone, OOM-killed, preempted) is
recreated by the operator and resumes from the last one (``restore``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from avaforge.storage import ArtifactRef, S3Store, StorageError, check_key
from avaforge.trainer.train import last_checkpoint


def spec_key(job: str) -> str:
    return check_key(f"train-jobs/{job}/spec.json")


def state_key(job: str) -> str:
    return check_key(f"train-jobs/{job}/state.json")


def write_json(store: S3Store, key: str, value: dict[str, Any]) -> None:
    """A small named object (the content-addressed ``put`` cannot hold a value that changes)."""
    data = json.dumps(value).encode()
    store._call(
        f"{store.bucket}/{key}",
        lambda: store.client.put_object(store.bucket, key, io.BytesIO(data), len(data)),
    )


def read_json(store: S3Store, key: str) -> dict[str, Any] | None:
    def read() -> bytes:
        response = store.client.get_object(store.bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    try:
        return json.loads(store._call(f"{store.bucket}/{key}", read))
    except StorageError as exc:
        if "no such artifact" in str(exc):
            return None
        raise


def restore(store: S3Store, job: str, run_dir: Path) -> int | None:
    """Put the job's last checkpoint from S3 into ``run_dir`` where mmengine's resume looks for it; its
    iteration, or None when the job has none yet (a fresh start)."""
    state = read_json(store, state_key(job)) or {}
    ckpt = state.get("checkpoint")
    if not ckpt:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"iter_{ckpt['iter']}.pth"
    if not path.exists():
        store.get_file(ArtifactRef(**ckpt["ref"]), path)
    (run_dir / "last_checkpoint").write_text(str(path))
    return int(ckpt["iter"])


class StateSync:
    """On the Master pod: progress and each new checkpoint to S3 (called every few seconds and at the end)."""

    def __init__(self, store: S3Store, job: str, run_dir: Path, progress: Path) -> None:
        self.store, self.job, self.run_dir, self.progress = store, job, run_dir, progress
        self.state: dict[str, Any] = read_json(store, state_key(job)) or {}

    def sync(self, **extra: Any) -> dict[str, Any]:
        changed = bool(extra)
        self.state.update(extra)
        try:
            progress = json.loads(self.progress.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            progress = None
        if progress and progress != self.state.get("progress"):
            self.state["progress"], changed = progress, True
        ckpt = last_checkpoint(self.run_dir)
        stored = self.state.get("checkpoint") or {}
        if ckpt is not None and ckpt.exists() and ckpt.name != f"iter_{stored.get('iter')}.pth":
            try:
                ref = self.store.put_file(f"train-jobs/{self.job}", ckpt, ".pth")
            except FileNotFoundError:  # rotated away by max_keep_ckpts meanwhile: the next one comes
                ref = None
            if ref is not None:
                iteration = int(ckpt.stem.removeprefix("iter_"))
                self.state["checkpoint"], changed = {"iter": iteration, "ref": ref.to_dict()}, True
        if changed:
            write_json(self.store, state_key(self.job), self.state)
        return self.state
