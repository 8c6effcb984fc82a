"""The annotate service over a real stack (nats-server, S3, every stage worker and the gateway in-process,
with the test TLS and tokens): a job prepared through the services is served to its owner over HTTPS (the
clip's document and its rawframes, byte for byte); no token is 401, another principal's job is 404 exactly as
an unknown one; saved labels become the job's labels, and the gateway's build makes a dataset whose train/val
rows are exactly those labels; a clip the owner assigns is saved by its annotator alone, its reviewer's pass
goes into the dataset report's agreement."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from avaforge.dataset_layout import DatasetLayout
from avaforge.formats.actions import ActionList
from avaforge.formats.ava_csv import read_rows
from avaforge.formats.timeline import rawframe_name
from avaforge.provenance import PROVENANCE_FILE
from avaforge.queue import RetryPolicy, WorkQueue
from avaforge.settings import PipelineSettings
from avaforge.stages.via_import import ClipLabels
from avaforge.storage import ArtifactRef
from avaforge.v1 import common_pb2
from avaforge.workbench.agreement import agreement
from devstack.servers import nats_server
from services.annotate.__main__ import start as start_annotate
from services.common import jobs
from services.common.artifacts import LocalCache
from services.common.worker import Context, record_failure
from services.gateway.__main__ import start as start_gateway
from tests.credentials import client as tls_client
from tests.credentials import credentials, security, server_env
from tests.stage_workers import HANDLERS, LoopThread, start_stage_workers

pytestmark = pytest.mark.slow
ACTIONS = {"groups": {"body": ["stand", "walk"], "hands": ["wave"]}}  # ids 1, 2, 3 in this order
VIDEO = "people_28fps_10s.mp4"  # tests/media.py: 10 s, 3-5 people
# two 5 s clips (the dataset needs a train and a val clip); the default 2 s margins leave seconds 2 and 3 of
# each to label
SETTINGS = PipelineSettings.from_dict({"cut": {"plan": {"mode": "windows", "window_s": 5.0}}})
POLICY = RetryPolicy(max_deliver=3, backoff_s=(0.2,), ack_wait_s=120)


class Https:
    """Requests to the annotate service as one of tests/credentials.py's principals (None: no token)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.context = ssl.create_default_context(cafile=str(credentials().ca))

    def request(
        self,
        method: str,
        path: str,
        principal: str | None = "alice",
        body: Any = None,
        token: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {}
        token = token or (credentials().tokens[principal] if principal else None)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPSConnection("localhost", self.port, context=self.context, timeout=120)
        try:
            conn.request(method, path, data, headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, principal: str = "alice", body: Any = None) -> Any:
        status, _, data = self.request(method, path, principal, body)
        assert status == 200, (path, status, data[:300])
        return json.loads(data)


@pytest.fixture(scope="module")
def stack(s3, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    _, store = s3
    tmp = tmp_path_factory.mktemp("annotate")
    nats = nats_server(tmp / "nats").start()
    url = f"nats://127.0.0.1:{nats.port}"
    background = LoopThread()

    async def up():  # type: ignore[no-untyped-def]
        queue = await WorkQueue.connect(url)
        ctx = Context.create(queue, store, tmp / "cache")
        stop = asyncio.Event()
        workers = await start_stage_workers(
            url, ctx, HANDLERS, stop, POLICY, on_dead=lambda d: record_failure(queue, d)
        )
        gateway, port = await start_gateway(queue, store, 0, security=security())
        annotate = await start_annotate(queue, store, tmp / "annotate-cache", 0, env=server_env())
        return queue, stop, workers, gateway, port, annotate

    queue, stop, workers, gateway, port, annotate = background.run(up())
    client = tls_client(port, "alice", timeout_s=300)
    yield client, Https(annotate.port), background, queue, store, tmp
    client.close()

    async def down() -> None:
        await annotate.stop()
        stop.set()
        await asyncio.gather(*(task for _, task in workers))
        await gateway.stop(1)
        for connection in [queue, *(q for q, _ in workers)]:
            await connection.close()

    background.run(down())
    background.close()
    nats.stop()


def _labels_for(index: int, box: dict[str, Any]) -> list[int]:
    """The test's labelling: a clip's first box is left unlabelled (it must give no row); every other person
    stands, the rest walk and wave."""
    if index == 0:
        return []
    return [1] if box["person"] % 2 == 0 else [2, 3]


def _expected_rows(doc: dict[str, Any]) -> list[tuple[int, tuple[float, ...], int]]:
    """(second, normalised box, action) of every labelled box of the saved document, as the AVA csv writes
    them (3 decimals)."""
    w, h = doc["frame_size"]
    out = []
    for b in doc["boxes"]:
        x1, y1, x2, y2 = b["box"]
        norm = tuple(round(min(max(v, 0.0), 1.0), 3) for v in (x1 / w, y1 / h, x2 / w, y2 / h))
        out += [(b["second"], norm, a) for a in b["actions"]]
    return sorted(out)


def test_annotate_serves_the_owners_job_and_saved_labels_build_the_dataset(stack, videos: Path) -> None:
    client, web, loop, queue, store, tmp = stack
    t0 = time.monotonic()
    job = client.submit([videos / VIDEO], ACTIONS, SETTINGS)
    job = client.wait(job.job_id, common_pb2.JOB_STATE_AWAITING_LABELS)
    assert job.state == common_pb2.JOB_STATE_AWAITING_LABELS, job
    print(f"job prepared through the services in {time.monotonic() - t0:.1f} s")
    clips = sorted(c.clip_id for c in job.clips)
    assert len(clips) == 2
    clip = clips[0]
    base = f"/jobs/{job.job_id}"

    # who may see it: no token 401, a wrong token 401, another user 404 exactly as an unknown job; admin 200
    assert web.request("GET", f"{base}/api/clips", None)[0] == 401
    assert web.request("GET", f"{base}/api/clips", None, token="not-a-token")[0] == 401
    assert web.request("GET", "/healthz", None)[0] == 401
    assert web.json("GET", "/healthz", "service") == {"status": "ok"}
    bob = web.request("GET", f"{base}/api/clips/{clip}", "bob")
    unknown = web.request("GET", f"/jobs/0123456789ab/api/clips/{clip}", "bob")
    assert bob[0] == unknown[0] == 404
    assert json.loads(bob[2])["detail"].replace(job.job_id, "ID") == json.loads(unknown[2])["detail"].replace(
        "0123456789ab", "ID"
    )
    assert job.job_id not in {j["job_id"] for j in web.json("GET", "/api/jobs", "bob")}
    assert job.job_id in {j["job_id"] for j in web.json("GET", "/api/jobs", "alice")}
    assert web.request("GET", f"{base}/api/clips", "admin")[0] == 200
    assert web.request("GET", "/jobs/../../etc/api/clips", "alice")[0] == 404  # not a job id: never a key
    # the page needs no token (a browser's navigation carries none) and is below the job's path
    status, headers, page = web.request("GET", base, None)
    assert status == 307 and headers["location"].endswith(f"{base}/")
    status, _, page = web.request("GET", f"{base}/", None)
    assert status == 200 and b'src="static/app.js"' in page
    assert web.request("GET", f"{base}/static/app.js", None)[0] == 200

    # the clip's document: the tracked boxes of the labelled seconds; its frames are the job's rawframes
    listed = web.json("GET", f"{base}/api/clips")
    assert [c["clip_id"] for c in listed] == clips and all(c["revision"] == 0 for c in listed)
    got = web.json("GET", f"{base}/api/clips/{clip}")
    doc = got["document"]
    assert got["revision"] == 0 and doc["seconds"] == [2, 3] and len(doc["boxes"]) >= 4
    ingested = loop.run(jobs.get(queue, jobs.fact(job.job_id, "ingest", clip)))
    rawframes = LocalCache(store, tmp / "check").folder(ArtifactRef(**ingested["rawframes"]))
    for frame in (1, doc["num_frames"] // 2, doc["num_frames"]):
        status, headers, jpeg = web.request("GET", f"{base}/api/clips/{clip}/frames/{frame}")
        assert status == 200 and headers["content-type"] == "image/jpeg"
        assert jpeg == (rawframes / rawframe_name(frame)).read_bytes()
    assert web.request("GET", f"{base}/api/clips/{clip}/frames/{doc['num_frames'] + 1}")[0] == 404
    assert web.request("GET", f"{base}/api/clips/nope/frames/1")[0] == 404

    # label every box of both clips through the API, one edit (= one saved revision) each; a stale base is 409
    finals = {}
    for c in clips:
        boxes = web.json("GET", f"{base}/api/clips/{c}")["document"]["boxes"]
        revision = 0
        for i, b in enumerate(boxes):
            op = {
                "op": "set_labels",
                "person": b["person"],
                "second": b["second"],
                "actions": _labels_for(i, b),
            }
            saved = web.json("POST", f"{base}/api/clips/{c}/edits", body={"base": revision, "op": op})
            revision = saved["revision"]
        assert revision == len(boxes)
        finals[c] = web.json("GET", f"{base}/api/clips/{c}")
        assert finals[c]["revision"] == revision
    stale = {"op": "set_labels", "person": doc["boxes"][0]["person"], "second": 2, "actions": [1]}
    assert web.request("POST", f"{base}/api/clips/{clip}/edits", body={"base": 1, "op": stale})[0] == 409
    assert (
        web.request("POST", f"{base}/api/clips/{clip}/edits", "bob", body={"base": 1, "op": stale})[0] == 404
    )
    history = web.json("GET", f"{base}/api/clips/{clip}/history")
    assert len(history) == finals[clip]["revision"] and {h["author"] for h in history} == {"alice"}

    # the owner assigns the first clip to bob with admin reviewing: bob may now open the job and save that
    # clip alone; admin's saves are the clip's review pass, which the services' build puts in the report
    first, second = clips
    assign = f"{base}/api/assignments/{first}"
    assert web.request("PUT", assign, "bob", body={"annotator": "bob"})[0] == 404  # not in the job yet
    row = web.json("PUT", assign, body={"annotator": "bob", "reviewer": "admin"})
    assert (row["annotator"], row["reviewer"], row["role"]) == ("bob", "admin", "annotator")
    assert web.request("PUT", assign, "bob", body={"annotator": "bob"})[0] == 403  # only the owner assigns
    assert job.job_id in {j["job_id"] for j in web.json("GET", "/api/jobs", "bob")}
    rows = web.json("GET", f"{base}/api/assignments", "bob")
    assert [(r["clip_id"], r["role"]) for r in rows] == [(first, "annotator"), (second, None)]
    b1 = finals[first]["document"]["boxes"][1]
    same = {"op": "set_labels", "person": b1["person"], "second": b1["second"], "actions": b1["actions"]}
    other = {"base": finals[second]["revision"], "op": same}
    assert web.request("POST", f"{base}/api/clips/{second}/edits", "bob", body=other)[0] == 403
    head = finals[first]["revision"]
    saved = web.json("POST", f"{base}/api/clips/{first}/edits", "bob", body={"base": head, "op": same})
    assert saved["revision"] == head + 1  # the same labels, saved by bob
    review = {"base": 0, "op": {**same, "actions": [2]}}
    assert web.json("POST", f"{base}/api/clips/{first}/edits", "admin", body=review)["revision"] == 1
    finals = {c: web.json("GET", f"{base}/api/clips/{c}") for c in clips}
    expected = {c: _expected_rows(f["document"]) for c, f in finals.items()}
    assert all(expected.values())
    assert all(sum(not b["actions"] for b in f["document"]["boxes"]) == 1 for f in finals.values())

    # the saved labels are the job's labels: the gateway's build makes the dataset from them
    for _ in range(600):
        if any(p.stage == "import" and p.done == 2 for p in client.get(job.job_id).progress):
            break
        time.sleep(0.1)
    client.build(job.job_id)
    done = client.wait(job.job_id, common_pb2.JOB_STATE_SUCCEEDED)
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done
    layout = DatasetLayout(client.download_dataset(job.job_id, tmp / "dataset"))
    rows = [r for split in ("train", "val") for r in read_rows(layout.csv(split))]
    assert {r.video_id for r in rows} == set(clips)
    for c in clips:
        mine = [r for r in rows if r.video_id == c]
        assert sorted((r.timestamp, (r.x1, r.y1, r.x2, r.y2), r.action_id) for r in mine) == expected[c]
        people = {(b["second"], b["person"]) for b in finals[c]["document"]["boxes"] if b["actions"]}
        assert len({(r.timestamp, r.person_id) for r in mine}) == len(people)
    # the report's agreement: the reviewed clip's, as the embedded build computes it from the same labels
    provenance = json.loads((layout.annotations / PROVENANCE_FILE).read_text())

    def fetched(key: str) -> ClipLabels:
        path = tmp / f"{key}.json"
        path.write_bytes(store.get(ArtifactRef(**loop.run(jobs.get(queue, key))["labels"])))
        return ClipLabels.load(path)

    labels = fetched(jobs.fact(job.job_id, "via_import", first))
    reviewed = fetched(f"{job.job_id}.{jobs.REVIEW_LABELS}.{first}")
    expected_agreement = agreement(labels.boxes, reviewed.boxes, ActionList.from_obj(ACTIONS)).to_dict()
    assert list(provenance["agreement"]) == [first]
    assert json.dumps(provenance["agreement"][first]) == json.dumps(expected_agreement)  # NaN-safe
