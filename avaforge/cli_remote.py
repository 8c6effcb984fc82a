"""``avaforge remote ...`` against a running stack (``--server`` or $AVAFORGE_GATEWAY); the arguments are
parsed in cli.py, which imports this module (and with it grpc and the generated stubs) only when it runs."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from avaforge.v1 import common_pb2

STATE = {v: k.removeprefix("JOB_STATE_").lower() for k, v in common_pb2.JobState.items()}


def _client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from avaforge.client import GatewayClient

    server = args.server or os.environ.get("AVAFORGE_GATEWAY")
    if not server:
        raise SystemExit("error: give --server HOST:PORT (or set AVAFORGE_GATEWAY)")
    ca = args.ca or os.environ.get("AVAFORGE_CA") or None
    token = args.token or os.environ.get("AVAFORGE_TOKEN") or None
    if ca and not Path(ca).is_file():
        raise SystemExit(f"error: --ca {ca}: no such file")
    return GatewayClient(server, ca=ca, token=token)


def _line(job: common_pb2.Job) -> str:
    progress = "  ".join(
        f"{p.stage} {p.done}/{p.total}" if p.total else f"{p.stage} {p.done}" for p in job.progress
    )
    error = f"  error: {job.error.stage}: {job.error.where}: {job.error.message}" if job.error.message else ""
    return f"{job.job_id} {STATE[job.state]:<16} {progress}{error}"


def _age(seconds: float) -> str:
    """Like kubectl: 45s, 12m, 5h, 3d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"


def _suggestions_for(project: str, folder: str | None):  # type: ignore[no-untyped-def]
    """Autolabel's suggestions for the project's clip: from ``folder`` or beside the project file."""
    from avaforge.client import read_suggestions, suggestions_beside
    from avaforge.formats.errors import read_bytes
    from avaforge.stages.via_import import project_clip_id

    if folder:
        path = Path(folder) / f"{project_clip_id(read_bytes(project), project)}.suggestions.json"
        return read_suggestions(path) if path.exists() else None
    beside = suggestions_beside(project)
    return read_suggestions(beside) if beside else None


def _watch(client, job_id: str, until: set[int]) -> int:  # type: ignore[no-untyped-def]
    """Live progress, one line per change, until the job reaches ``until`` or ends."""
    last = None
    for job in client.watch(job_id):
        line = _line(job)
        if line != last:
            print(line, flush=True)
            last = line
        if job.state in until | {common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_CANCELLED}:
            return 0 if job.state in until else 1
    return 0


def cmd(args: argparse.Namespace) -> int:
    from avaforge.formats.actions import ActionList
    from avaforge.settings import PipelineSettings

    client = _client(args)
    try:
        if args.remote == "submit":
            settings = PipelineSettings.load(args.settings) if args.settings else None
            job = client.submit(args.videos, ActionList.load(args.actions), settings)
            print(job.job_id)
            return _watch(client, job.job_id, {common_pb2.JOB_STATE_AWAITING_LABELS}) if args.watch else 0
        if args.remote == "watch":
            return _watch(
                client, args.job, {common_pb2.JOB_STATE_AWAITING_LABELS, common_pb2.JOB_STATE_SUCCEEDED}
            )
        if args.remote == "jobs":
            now = time.time()
            print(f"{'JOB':<12} {'OWNER':<16} {'AGE':>6} {'STATE':<16} PROGRESS")
            for job in client.jobs():
                age = _age(now - job.created) if job.created else "-"
                print(f"{job.job_id:<12} {job.owner or '-':<16} {age:>6} {_line(job)[len(job.job_id) + 1 :]}")
            return 0
        if args.remote == "delete":
            done = client.delete(args.job)
            print(
                f"deleted job {done.job_id}: {done.facts_deleted} facts, {done.artifacts_deleted} artifacts "
                f"({done.artifacts_shared} kept: shared with other jobs), "
                f"{done.workbench_files_deleted} workbench files"
            )
            return 0
        if args.remote == "via":
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            for clip in client.get(args.job).clips:
                print(client.download_via(args.job, clip.clip_id, out / f"{clip.clip_id}.zip"))
            return 0
        if args.remote == "upload":
            for path in args.files:
                job = client.upload_finished(args.job, path, _suggestions_for(path, args.suggestions))
            print(_line(job))
            return 0
        if args.remote == "build":
            client.build(args.job)
            return _watch(client, args.job, {common_pb2.JOB_STATE_SUCCEEDED})
        if args.remote == "dataset":
            print(client.download_dataset(args.job, args.out))
            return 0
    finally:
        client.close()
    print(f"unknown remote command {args.remote}", file=sys.stderr)
    return 2
