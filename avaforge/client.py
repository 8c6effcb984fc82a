"""A small Python client of the gateway, for scripts and the CLI's ``--server`` mode."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from avaforge.archive import unpack_tree
from avaforge.channel import open_channel
from avaforge.formats.actions import ActionList
from avaforge.proto_convert import actions_to_proto, settings_to_proto
from avaforge.settings import PipelineSettings
from avaforge.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

CHUNK = 1 << 20
log = logging.getLogger("avaforge.client")


Suggestions = dict[tuple[int, int], tuple[int, ...]]


def read_suggestions(path: str | Path) -> Suggestions:
    """An autolabel suggestions file (``<clip>.suggestions.json``, written next to its project)."""
    return {(t, p): tuple(a) for t, p, a in json.loads(Path(path).read_text())}


def suggestions_beside(project: str | Path) -> Path | None:
    """``autolabel/<clip>.suggestions.json`` for ``autolabel/<clip>.via3.json``, if it exists."""
    project = Path(project)
    found = project.with_name(project.name.removesuffix(".via3.json") + ".suggestions.json")
    return found if project.name.endswith(".via3.json") and found.exists() else None


class GatewayClient:
    """``ca``: the CA certificate (path or PEM) the gateway's certificate is checked against (None: plaintext,
    loopback only); ``token``: this principal's bearer token, sent on every call."""

    def __init__(
        self,
        target: str,
        timeout_s: float = 600.0,
        ca: str | Path | bytes | None = None,
        token: str | None = None,
        reconnect_s: float = 600.0,
    ) -> None:
        self.reconnect_s = reconnect_s
        self.target = target
        self.channel = open_channel(
            target, ca, token, options=[("grpc.max_receive_message_length", 64 << 20)]
        )
        self.stub = gateway_pb2_grpc.GatewayServiceStub(self.channel)
        self.timeout_s = timeout_s

    def close(self) -> None:
        self.channel.close()

    def upload_video(self, path: str | Path, name: str | None = None) -> common_pb2.ArtifactRef:
        """Streamed from disk chunk by chunk (the first names the file)."""
        path = Path(path)

        def chunks() -> Iterator[gateway_pb2.UploadChunk]:
            with open(path, "rb") as f:
                data = f.read(CHUNK)
                yield gateway_pb2.UploadChunk(filename=name or path.name, data=data)
                while data := f.read(CHUNK):
                    yield gateway_pb2.UploadChunk(data=data)

        return self.stub.UploadVideo(chunks(), timeout=self.timeout_s)

    def submit(
        self,
        videos: list[str | Path],
        actions: ActionList | dict[str, Any],
        settings: PipelineSettings | None = None,
    ) -> common_pb2.Job:
        # Converted before any upload: bad settings or actions fail fast with a FormatError naming the field.
        action_list = actions if isinstance(actions, ActionList) else ActionList.from_obj(actions)
        request = gateway_pb2.SubmitJobRequest(
            filenames=[Path(v).name for v in videos],
            actions=actions_to_proto(action_list),
            settings=settings_to_proto(settings or PipelineSettings()),
        )
        request.videos.extend(self.upload_video(v) for v in videos)
        return self.stub.SubmitJob(request, timeout=self.timeout_s)

    def get(self, job_id: str) -> common_pb2.Job:
        return self.stub.GetJob(gateway_pb2.GetJobRequest(job_id=job_id), timeout=self.timeout_s)

    def watch(self, job_id: str) -> Iterator[common_pb2.Job]:
        """Job states as they change, for as long as the job runs (no deadline). A gateway that goes away
        (UNAVAILABLE: restart, rollout) is waited for with backoff and the watch resumes where it was; only an
        outage longer than ``reconnect_s`` ends it with the last error."""
        delay, down_since = 0.5, None
        while True:
            try:
                for job in self.stub.WatchJob(gateway_pb2.GetJobRequest(job_id=job_id)):
                    delay, down_since = 0.5, None
                    yield job
                return  # the gateway ends the stream when the job ends
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                down_since = down_since or time.monotonic()
                if time.monotonic() - down_since > self.reconnect_s:
                    raise
                log.info("gateway unavailable (%s); watching again in %.1f s", exc.details(), delay)
                time.sleep(delay)
                delay = min(delay * 2, 15.0)

    def wait(self, job_id: str, *states: int) -> common_pb2.Job:
        """Follow the job until it reaches one of ``states`` (or fails or is cancelled): the last state."""
        wanted = set(states) | {common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_CANCELLED}
        for job in self.watch(job_id):
            if job.state in wanted:
                return job
        return self.get(job_id)

    def _download(self, chunks: Iterator[gateway_pb2.DataChunk], dest: Path) -> Path:
        """A download streamed into ``dest`` through ``.<name>.partial``: a broken one leaves nothing."""
        tmp = dest.with_name(f".{dest.name}.partial")
        try:
            with open(tmp, "wb") as f:
                for chunk in chunks:
                    f.write(chunk.data)
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def download_via(self, job_id: str, clip_id: str, dest: str | Path) -> Path:
        chunks = self.stub.DownloadViaArchive(
            gateway_pb2.DownloadViaArchiveRequest(job_id=job_id, clip_id=clip_id), timeout=self.timeout_s
        )
        return self._download(chunks, Path(dest))

    def upload_finished(
        self, job_id: str, project: str | Path, suggestions: Suggestions | None = None
    ) -> common_pb2.Job:
        """A finished VIA project; ``suggestions`` (autolabel's ticks it started from, e.g.
        ``read_suggestions``) make labels equal to them count as machine-made, as in the embedded run."""
        request = gateway_pb2.UploadFinishedProjectRequest(job_id=job_id, project=Path(project).read_bytes())
        for (second, person), acts in sorted((suggestions or {}).items()):
            request.suggestions.add(second=second, person_id=person, action_ids=list(acts))
        return self.stub.UploadFinishedProject(request, timeout=self.timeout_s)

    def build(self, job_id: str) -> common_pb2.Job:
        return self.stub.BuildDataset(gateway_pb2.GetJobRequest(job_id=job_id), timeout=self.timeout_s)

    def download_dataset(self, job_id: str, dest: str | Path) -> Path:
        """The dataset tar streamed to a file next to ``dest``, then unpacked from it (and removed)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tar = dest.with_name(f".{dest.name}.tar")
        try:
            request = gateway_pb2.GetJobRequest(job_id=job_id)
            chunks = self.stub.DownloadDataset(request, timeout=self.timeout_s)
            unpack_tree(self._download(chunks, tar), dest, f"dataset of job {job_id}")
        finally:
            tar.unlink(missing_ok=True)
        return dest

    def delete(self, job_id: str) -> gateway_pb2.DeleteJobResponse:
        return self.stub.DeleteJob(gateway_pb2.GetJobRequest(job_id=job_id), timeout=self.timeout_s)

    def jobs(self, limit: int = 0) -> list[common_pb2.Job]:
        return list(self.stub.ListJobs(gateway_pb2.ListJobsRequest(limit=limit), timeout=self.timeout_s).jobs)
