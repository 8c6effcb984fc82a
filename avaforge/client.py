"""A small Python client of the gateway, for scripts and the CLI's ``--server`` mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from avaforge.archive import unpack_tree
from avaforge.channel import open_channel
from avaforge.formats.actions import ActionList
from avaforge.proto_convert import actions_to_proto, settings_to_proto
from avaforge.settings import PipelineSettings
from avaforge.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

CHUNK = 1 << 20


class GatewayClient:
    """``ca``: the CA certificate (path or PEM) the gateway's certificate is checked against (None: plaintext,
    loopback only); ``token``: this principal's bearer token, sent on every call."""

    def __init__(
        self,
        target: str,
        timeout_s: float = 600.0,
        ca: str | Path | bytes | None = None,
        token: str | None = None,
    ) -> None:
        self.target = target
        self.channel = open_channel(
            target, ca, token, options=[("grpc.max_receive_message_length", 64 << 20)]
        )
        self.stub = gateway_pb2_grpc.GatewayServiceStub(self.channel)
        self.timeout_s = timeout_s

    def close(self) -> None:
        self.channel.close()

    def upload_video(self, path: str | Path, name: str | None = None) -> common_pb2.ArtifactRef:
        data = Path(path).read_bytes()

        def chunks() -> Iterator[gateway_pb2.UploadChunk]:
            yield gateway_pb2.UploadChunk(filename=name or Path(path).name, data=data[:CHUNK])
            for i in range(CHUNK, len(data), CHUNK):
                yield gateway_pb2.UploadChunk(data=data[i : i + CHUNK])

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
        yield from self.stub.WatchJob(gateway_pb2.GetJobRequest(job_id=job_id), timeout=self.timeout_s)

    def wait(self, job_id: str, *states: int) -> common_pb2.Job:
        """Follow the job until it reaches one of ``states`` (or fails): the last state seen."""
        wanted = set(states) | {common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_CANCELLED}
        for job in self.watch(job_id):
            if job.state in wanted:
                return job
        return self.get(job_id)

    def download_via(self, job_id: str, clip_id: str, dest: str | Path) -> Path:
        chunks = self.stub.DownloadViaArchive(
            gateway_pb2.DownloadViaArchiveRequest(job_id=job_id, clip_id=clip_id), timeout=self.timeout_s
        )
        Path(dest).write_bytes(b"".join(c.data for c in chunks))
        return Path(dest)

    def upload_finished(self, job_id: str, project: str | Path) -> common_pb2.Job:
        return self.stub.UploadFinishedProject(
            gateway_pb2.UploadFinishedProjectRequest(job_id=job_id, project=Path(project).read_bytes()),
            timeout=self.timeout_s,
        )

    def build(self, job_id: str) -> common_pb2.Job:
        return self.stub.BuildDataset(gateway_pb2.GetJobRequest(job_id=job_id), timeout=self.timeout_s)

    def download_dataset(self, job_id: str, dest: str | Path) -> Path:
        chunks = self.stub.DownloadDataset(gateway_pb2.GetJobRequest(job_id=job_id), timeout=self.timeout_s)
        unpack_tree(b"".join(c.data for c in chunks), dest, f"dataset of job {job_id}")
        return Path(dest)
