"""Authentication and authorisation on a real gateway (TLS, tokens) over real nats-server + S3: no or a wrong
token is UNAUTHENTICATED, another principal's job is NOT_FOUND exactly as an unknown one, an admin sees it,
a plaintext client cannot talk to a TLS port, the CLI connects with --ca/--token or their variables, the
trainer scopes its jobs the same way, and a reachable port is refused without TLS and tokens."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from avaforge.channel import open_channel
from avaforge.queue import WorkQueue
from avaforge.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, stages_pb2, stages_pb2_grpc
from devstack.servers import nats_server
from services.common import auth, runtime
from services.common.convert import ref_to_proto
from services.gateway.__main__ import start
from services.trainer.servicer import NAME as TRAINER
from services.trainer.servicer import TrainerServicer
from tests.credentials import channel, client, credentials, security, server_env
from tests.stage_workers import LoopThread

REPO = Path(__file__).resolve().parents[1]
ACTIONS = {"groups": {"body": ["stand", "walk"]}}


@pytest.fixture(scope="module")
def gateway(s3, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A gateway and a trainer API with the test TLS and tokens; no workers (jobs stay queued)."""
    _, store = s3
    tmp = tmp_path_factory.mktemp("auth")
    nats = nats_server(tmp / "nats").start()
    loop = LoopThread()

    async def up():  # type: ignore[no-untyped-def]
        queue = await WorkQueue.connect(f"nats://127.0.0.1:{nats.port}")
        server, port = await start(queue, store, 0, security=security())
        trainer = await runtime.serve(
            "trainer",
            [(stages_pb2_grpc.add_TrainerServiceServicer_to_server, TrainerServicer(queue, store), TRAINER)],
            0,
            0,
            "127.0.0.1",
            security=security(),
        )
        return queue, server, port, trainer

    queue, server, port, trainer = loop.run(up())
    yield port, trainer.port, store
    loop.run(server.stop(0))
    loop.run(trainer.stop(0))
    loop.run(queue.close())
    loop.close()
    nats.stop()


@pytest.fixture(scope="module")
def alices_job(gateway, videos: Path) -> str:
    port, _, _ = gateway
    alice = client(port, "alice")
    try:
        return alice.submit([videos / "people_1080p_vfr_2.6s.mp4"], ACTIONS).job_id
    finally:
        alice.close()


def _code(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


def test_no_token_and_a_wrong_token_are_unauthenticated(gateway, alices_job: str) -> None:
    port, _, _ = gateway
    c = credentials()
    for token in (None, "not-a-token", c.tokens["alice"] + "x"):
        with open_channel(f"localhost:{port}", c.ca, token) as ch:
            stub = gateway_pb2_grpc.GatewayServiceStub(ch)
            for call in (
                lambda s=stub: s.GetJob(gateway_pb2.GetJobRequest(job_id=alices_job), timeout=10),
                lambda s=stub: s.ListJobs(gateway_pb2.ListJobsRequest(), timeout=10),
                lambda s=stub: list(s.WatchJob(gateway_pb2.GetJobRequest(job_id=alices_job), timeout=10)),
                lambda s=stub: s.UploadVideo(iter([gateway_pb2.UploadChunk(filename="a.mp4")]), timeout=10),
                lambda ch=ch: health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(), timeout=10
                ),
            ):
                code, details = _code(call)
                assert code == grpc.StatusCode.UNAUTHENTICATED, details
                assert details == (
                    "no bearer token (metadata authorization)" if token is None else "unknown bearer token"
                )


def test_another_principals_job_is_not_found_exactly_as_an_unknown_one(gateway, alices_job: str) -> None:
    port, _, _ = gateway
    with open_channel(f"localhost:{port}", credentials().ca, credentials().tokens["bob"]) as ch:
        bob = gateway_pb2_grpc.GatewayServiceStub(ch)
        unknown = "0123456789ab"
        for job_id in (alices_job, unknown):
            get = gateway_pb2.GetJobRequest(job_id=job_id)
            calls = {
                "get": lambda r=get: bob.GetJob(r, timeout=10),
                "watch": lambda r=get: list(bob.WatchJob(r, timeout=10)),
                "cancel": lambda r=get: bob.CancelJob(r, timeout=10),
                "via": lambda j=job_id: list(
                    bob.DownloadViaArchive(
                        gateway_pb2.DownloadViaArchiveRequest(job_id=j, clip_id="c"), timeout=10
                    )
                ),
                "upload": lambda j=job_id: bob.UploadFinishedProject(
                    gateway_pb2.UploadFinishedProjectRequest(job_id=j, project=b"{}"), timeout=10
                ),
                "build": lambda r=get: bob.BuildDataset(r, timeout=10),
                "dataset": lambda r=get: list(bob.DownloadDataset(r, timeout=10)),
            }
            for name, call in calls.items():
                assert _code(call) == (grpc.StatusCode.NOT_FOUND, f"no job {job_id!r}"), name
        listed = bob.ListJobs(gateway_pb2.ListJobsRequest(), timeout=10).jobs
        assert alices_job not in [j.job_id for j in listed]
    alice = client(port, "alice")
    try:  # alice's own calls still see it (not cancelled by bob's attempt)
        assert alice.get(alices_job).state == common_pb2.JOB_STATE_QUEUED
        assert alices_job in [j.job_id for j in alice.stub.ListJobs(gateway_pb2.ListJobsRequest()).jobs]
    finally:
        alice.close()


def test_admin_sees_every_job(gateway, alices_job: str, videos: Path) -> None:
    port, _, _ = gateway
    bob = client(port, "bob")
    admin = client(port, "admin")
    try:
        bobs_job = bob.submit([videos / "people_1080p_vfr_2.6s.mp4"], ACTIONS).job_id
        assert admin.get(alices_job).job_id == alices_job
        listed = {j.job_id for j in admin.stub.ListJobs(gateway_pb2.ListJobsRequest()).jobs}
        assert {alices_job, bobs_job} <= listed
        assert bobs_job not in {
            j.job_id for j in client(port, "alice").stub.ListJobs(gateway_pb2.ListJobsRequest()).jobs
        }
    finally:
        bob.close()
        admin.close()


def test_a_plaintext_client_cannot_talk_to_a_tls_port(gateway) -> None:
    port, _, _ = gateway
    with open_channel(f"127.0.0.1:{port}", None, credentials().tokens["admin"]) as ch:
        code, _ = _code(
            lambda: gateway_pb2_grpc.GatewayServiceStub(ch).ListJobs(gateway_pb2.ListJobsRequest(), timeout=5)
        )
    assert code == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails: no answer at all


def test_a_certificate_from_another_ca_is_refused(gateway, tmp_path: Path) -> None:
    from devstack.certs import make_ca

    port, _, _ = gateway
    _, other_ca = make_ca("someone else's CA")
    with open_channel(f"localhost:{port}", other_ca, credentials().tokens["admin"]) as ch:
        code, _ = _code(
            lambda: gateway_pb2_grpc.GatewayServiceStub(ch).ListJobs(gateway_pb2.ListJobsRequest(), timeout=5)
        )
    assert code == grpc.StatusCode.UNAVAILABLE


def test_the_cli_connects_with_ca_and_token_flags_or_variables(
    gateway, alices_job: str, tmp_path: Path
) -> None:
    port, _, _ = gateway
    c = credentials()
    cli = [sys.executable, "-m", "avaforge.cli", "remote", "--server", f"localhost:{port}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVAFORGE_")}
    flags = subprocess.run(
        [*cli, "--ca", str(c.ca), "--token", c.tokens["alice"], "jobs"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert flags.returncode == 0, flags.stderr
    assert alices_job in flags.stdout
    variables = subprocess.run(
        [*cli, "jobs"],
        env={**env, "AVAFORGE_CA": str(c.ca), "AVAFORGE_TOKEN": c.tokens["bob"]},
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert variables.returncode == 0, variables.stderr
    assert alices_job not in variables.stdout  # bob's list
    missing = subprocess.run(
        [*cli, "--ca", str(tmp_path / "nope.pem"), "jobs"], env=env, capture_output=True, text=True
    )
    assert missing.returncode != 0 and "nope.pem: no such file" in missing.stderr


def test_training_jobs_belong_to_their_principal(gateway) -> None:
    _, trainer_port, store = gateway
    dataset = ref_to_proto(store.put("datasets", b"a dataset tar for the scoping test", ".tar"))
    start_req = stages_pb2.StartTrainingRequest(dataset=dataset, preset="tiny", iters=1)
    with (
        channel(trainer_port, "alice") as a,
        channel(trainer_port, "bob") as b,
        channel(trainer_port, "admin") as adm,
    ):
        job = stages_pb2_grpc.TrainerServiceStub(a).StartTraining(start_req, timeout=10)
        watch = stages_pb2.WatchTrainingRequest(job_id=job.job_id)
        cancel = stages_pb2.CancelTrainingRequest(job_id=job.job_id)
        bob = stages_pb2_grpc.TrainerServiceStub(b)
        for call in (
            lambda: bob.CancelTraining(cancel, timeout=10),
            lambda: next(bob.WatchTraining(watch, timeout=10)),
        ):
            assert _code(call) == (grpc.StatusCode.NOT_FOUND, f"no training job {job.job_id!r}")
        seen = next(stages_pb2_grpc.TrainerServiceStub(adm).WatchTraining(watch, timeout=10))
        assert seen.job_id == job.job_id
    with open_channel(f"localhost:{trainer_port}", credentials().ca) as ch:
        code, _ = _code(lambda: stages_pb2_grpc.TrainerServiceStub(ch).StartTraining(start_req, timeout=10))
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_the_probe_uses_tls_and_the_service_token(gateway) -> None:
    port, _, _ = gateway
    probe = [sys.executable, "-m", "services.common.probe", str(port)]
    base = {k: v for k, v in os.environ.items() if not k.startswith("AVAFORGE_")}
    ok = subprocess.run(probe, env={**base, **server_env()}, capture_output=True, text=True, cwd=REPO)
    assert ok.returncode == 0 and "SERVING" in ok.stdout, ok.stderr
    no_token = {k: v for k, v in server_env().items() if k != "AVAFORGE_TOKEN_FILE"}
    refused = subprocess.run(probe, env={**base, **no_token}, capture_output=True, text=True, cwd=REPO)
    assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr


def test_a_reachable_address_needs_tls_and_tokens() -> None:
    async def serve(bind: str, security: auth.ServerSecurity) -> None:
        running = await runtime.serve("t", [], 0, 0, bind, security=security)
        await running.stop(0)

    for sec, missing in (
        (auth.ServerSecurity(), "TLS and tokens"),
        (auth.ServerSecurity(tokens=security().tokens), "TLS"),
        (auth.ServerSecurity(security().cert, security().key), "tokens"),
    ):
        with pytest.raises(RuntimeError, match=f"refusing to serve on 0.0.0.0 without {missing}:"):
            asyncio.run(serve("0.0.0.0", sec))
    asyncio.run(serve("0.0.0.0", security()))  # both: allowed
    asyncio.run(serve("127.0.0.1", auth.ServerSecurity()))  # loopback: tests and embedding


def test_tokens_are_stored_hashed_and_reloaded_when_the_file_changes(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens.json"
    carol = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.common.auth",
            "token",
            "carol",
            "user",
            "--tokens",
            str(tokens_file),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout.strip()
    assert oct(tokens_file.stat().st_mode & 0o777) == "0o600"
    stored = tokens_file.read_text()
    assert carol not in stored and auth.token_hash(carol) in stored
    table = auth.Tokens(tokens_file)
    assert table.lookup(carol) == auth.Principal("carol", "user")
    dave = auth.add_token(tokens_file, "dave", "admin")
    assert table.lookup(dave) == auth.Principal("dave", "admin")  # picked up without a restart
    tokens_file.write_text(json.dumps({auth.token_hash(dave): {"principal": "dave", "role": "root"}}))
    with pytest.raises(ValueError, match="role"):
        auth.Tokens(tokens_file)


def test_each_service_connects_to_nats_as_its_own_user(tmp_path: Path) -> None:
    """As the dev overlay's NATS config does: users per service, no anonymous client; ``auth.nats_url``
    puts the service's user (AVAFORGE_NATS_USER/_PASSWORD) into the URL the queue connects with."""
    from devstack.servers import Server, _binary, free_port

    port = free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(
        f'listen: "127.0.0.1:{port}"\njetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
        'authorization { users = [ {user: "gateway", password: $NATS_GATEWAY_PASSWORD} ] }\n'
    )
    password = auth.new_token()
    server = Server(
        "nats", [_binary("nats-server"), "-c", str(conf)], port, tmp_path, {"NATS_GATEWAY_PASSWORD": password}
    ).start()
    base = {"AVAFORGE_NATS_URL": f"nats://127.0.0.1:{port}"}

    async def connects(env: dict[str, str]) -> bool:
        try:
            queue = await asyncio.wait_for(WorkQueue.connect(auth.nats_url(env)), 5)
        except Exception:  # refused (nats-py's own error types) or never let in
            return False
        await queue.close()
        return True

    try:
        assert auth.nats_url(base) == f"nats://127.0.0.1:{port}"
        assert asyncio.run(
            connects({**base, "AVAFORGE_NATS_USER": "gateway", "AVAFORGE_NATS_PASSWORD": password})
        )
        assert not asyncio.run(connects(base))  # anonymous
        assert not asyncio.run(
            connects({**base, "AVAFORGE_NATS_USER": "gateway", "AVAFORGE_NATS_PASSWORD": "x"})
        )
    finally:
        server.stop()
    with pytest.raises(ValueError, match="letters, digits"):
        auth.nats_url({**base, "AVAFORGE_NATS_USER": "gateway", "AVAFORGE_NATS_PASSWORD": "a@b"})
