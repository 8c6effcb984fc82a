"""Finished VIA projects checked on arrival. A real project (the embedded runner's prepare + autolabel on a
test video, made once for the module) is mutated by hypothesis the ways annotators and their tools break
files; every mutation gives labels or a FormatError naming where, never another exception: embedded
(via_import.import_project) and through the gateway's UploadFinishedProject (INVALID_ARGUMENT, never
INTERNAL/UNKNOWN). A project that fails to import in the worker is recorded for its clip and cleared by a
corrected upload; the job never fails for it."""

from __future__ import annotations

import copy
import json
import math
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avaforge.formats.actions import ActionList
from avaforge.formats.errors import FormatError
from avaforge.runner import _load_clip, autolabel_workdir, prepare
from avaforge.settings import ClipPlan, CutSettings, PipelineSettings
from avaforge.stages.via_import import ClipLabels, import_project
from avaforge.v1 import common_pb2, gateway_pb2
from avaforge.workdir import Workdir
from services.common import jobs
from services.common.worker import Context
from services.via.handlers import via_import_item
from tests.gateway_stack import GatewayStack

pytestmark = pytest.mark.slow
ACTIONS = {"groups": {"body": ["stand", "walk"], "hands": ["wave"]}}
# The first 7 s of a test video: labelled seconds 2..5 with the default 2 s margins, people on each keyframe.
PLAN = PipelineSettings(cut=CutSettings(plan=ClipPlan(mode="explicit", segments=((0.0, 7.0),))))
# The 29.97 fps video with people: a vtest crop of tests/media.py.
VIDEO_NAMES = ("people_29.97fps_10s.mp4",)  # tests/media.py
EMBEDDED_EXAMPLES = 1000
GATEWAY_EXAMPLES = 1000  # one gRPC call each: the test took 59 s on 2 shared cores at load ~20

WEIRD = [
    None,
    "",
    "x",
    "²",
    "٣",
    "-1",
    " 1",
    "1" * 30,
    [],
    {},
    0,
    -1,
    True,
    1.5,
    math.nan,
    math.inf,
    -math.inf,
    10**30,
    10**400,
    -(10**6),
    [2, 1, 1, 1],
    [7, 1, 1, 2, 2, 3, 3],
]
COORDS = [math.nan, math.inf, -math.inf, -5.0, -1e9, 1e12, 10**400, 0, 0.0, "10", None, True]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, videos: Path) -> dict[str, Any]:
    video = next(videos / n for n in VIDEO_NAMES if (videos / n).is_file())
    work = tmp_path_factory.mktemp("upload_checks") / "work"
    prepare([video], ActionList.from_obj(ACTIONS), work, PLAN)
    (project_path,) = autolabel_workdir(work)
    wd = Workdir(work)
    (cid,) = wd.clip_ids()
    _, clip, finfo, tracks = _load_clip(wd, cid)
    project = json.loads(project_path.read_bytes())
    assert len(project["metadata"]) >= 4, "the real project must have regions to mutate"
    return {"work": work, "clip": clip, "finfo": finfo, "tracks": tracks, "project": project, "cid": cid}


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for k in path[:-1]:
        doc = doc[k]
    return doc


@st.composite
def mutated(draw: st.DrawFn, project: str) -> bytes:
    """1-3 mutations of the project (given as JSON): keys deleted or renamed, values of the wrong type,
    bad coordinates, unknown option ids, other shapes, odd person ids, duplicated regions, views or files
    removed."""
    doc = json.loads(project)  # the project's JSON: a fresh copy, several times faster than copy.deepcopy
    for _ in range(draw(st.integers(1, 3))):
        regions = (
            [k for k, v in doc.get("metadata", {}).items() if isinstance(v, dict)]
            if isinstance(doc.get("metadata"), dict)
            else []
        )
        kind = draw(
            st.sampled_from(
                ["delete", "rename", "retype", "coord", "option", "shape", "person", "dup", "drop_view"]
            )
        )
        paths = _paths(doc) if kind in ("delete", "rename", "retype") else []
        if paths:
            path = paths[draw(st.integers(0, len(paths) - 1))]
            parent = _parent(doc, path)
            if kind == "retype":
                parent[path[-1]] = draw(st.sampled_from(WEIRD))
            elif isinstance(parent, dict) and kind == "delete":
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(st.sampled_from(["", "x", "²", "1", "99", "vid", "xy"]))] = parent.pop(path[-1])
            elif parent:
                parent.pop(path[-1])
        elif regions:
            md = doc["metadata"][draw(st.sampled_from(sorted(regions)))]
            xy = md.get("xy")
            if kind == "coord" and isinstance(xy, list) and len(xy) > 1:
                xy[draw(st.integers(1, len(xy) - 1))] = draw(st.sampled_from(COORDS))
            elif kind == "option" and isinstance(md.get("av"), dict):
                md["av"][draw(st.sampled_from(["2", "3", "9"]))] = draw(
                    st.sampled_from(["7", "1,99", "²", "a"])
                )
            elif kind == "shape":
                md["xy"] = draw(st.sampled_from([[1, 5, 5], [3, 50, 50, 10], [7, 1, 1, 9, 1, 9, 9], [], [2]]))
            elif kind == "person" and isinstance(md.get("av"), dict):
                md["av"]["1"] = draw(
                    st.sampled_from(["²", "٣", "1²", "-3", "0x1", "1e3", "99999999999", "0"])
                )
            elif kind == "dup":
                doc["metadata"][draw(st.sampled_from(["dup", "1_p0", "x"]))] = copy.deepcopy(md)
            elif kind == "drop_view":
                table = draw(st.sampled_from(["view", "file"]))
                if isinstance(doc.get(table), dict) and doc[table]:
                    del doc[table][draw(st.sampled_from(sorted(doc[table])))]
    return json.dumps(doc, ensure_ascii=draw(st.booleans())).encode()  # NaN/Infinity as Python writes them


def _check_labels(labels: ClipLabels, width: int, height: int) -> None:
    """What a project that imports must give: finite boxes inside the image, ids 0.., known actions."""
    for b in labels.boxes:
        assert all(math.isfinite(v) and 0 <= v <= 1 for v in b.box), b
        assert b.box[0] < b.box[2] and b.box[1] < b.box[3], b
        assert isinstance(b.person_id, int) and b.person_id >= 0, b
        assert b.actions and all(1 <= a <= 3 for a in b.actions), b


def test_the_unmutated_project_imports(prepared: dict[str, Any]) -> None:
    labels = _import(prepared, json.dumps(prepared["project"]).encode())
    assert isinstance(labels, ClipLabels) and labels.boxes
    _check_labels(labels, prepared["finfo"].width, prepared["finfo"].height)


def _import(prepared: dict[str, Any], data: bytes) -> ClipLabels:
    return import_project(
        data,
        "mutated",
        prepared["finfo"],
        prepared["tracks"],
        ActionList.from_obj(ACTIONS),
        PipelineSettings().imports,
    )


@pytest.mark.parametrize(
    ("region_field", "value", "message"),
    [
        ("person", "²", "is not a track id"),  # the repro: a ValueError traceback before
        ("xy", [2, math.nan, 10, 20, 20], "not a finite number"),  # passed import, failed at build before
        ("xy", [2, 10, 10, 10**400, 20], "too large"),
        ("xy", [2, 10, 10, math.inf, 20], "not a finite number"),
    ],
)
def test_known_annotator_mistakes_name_the_region(
    prepared: dict[str, Any], region_field: str, value: Any, message: str
) -> None:
    doc = copy.deepcopy(prepared["project"])
    mid = sorted(doc["metadata"])[0]
    if region_field == "person":
        doc["metadata"][mid]["av"]["1"] = value
    else:
        doc["metadata"][mid]["xy"] = value
    with pytest.raises(FormatError) as exc:
        _import(prepared, json.dumps(doc).encode())
    assert message in exc.value.message and f"region {mid}" in (exc.value.where or "")


def test_mutated_projects_give_labels_or_a_format_error_embedded(prepared: dict[str, Any]) -> None:
    outcomes = {"labels": 0, "format_error": 0}

    @settings(
        max_examples=EMBEDDED_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(mutated(json.dumps(prepared["project"])))
    def run(data: bytes) -> None:
        try:
            labels = _import(prepared, data)
        except FormatError as exc:
            assert exc.where, exc  # says where
            outcomes["format_error"] += 1
            return
        _check_labels(labels, prepared["finfo"].width, prepared["finfo"].height)
        outcomes["labels"] += 1

    run()
    assert sum(outcomes.values()) >= EMBEDDED_EXAMPLES
    assert outcomes["labels"] > 0 and outcomes["format_error"] > 0, outcomes  # both kinds were generated


# ---- through the gateway -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(prepared: dict[str, Any], s3, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A gateway on a real nats-server + S3 with a job whose clip facts are the prepared clip's (as ingest and
    track record them), waiting for labels; no stage workers run, so the queue shows what was submitted."""
    _, store = s3
    tmp = tmp_path_factory.mktemp("upload_gateway")
    stack = GatewayStack(store, tmp, secure=False)
    job_id = uuid.uuid4().hex[:12]
    cid = prepared["cid"]

    async def seed() -> None:
        queue = stack.queue
        spec = {
            "job_id": job_id,
            "created": 0.0,
            "videos": [],
            "filenames": [],
            "settings": PipelineSettings().to_dict(),
            "actions": ActionList.from_obj(ACTIONS).to_dict(),
            "cancelled": False,
        }
        await jobs.put(queue, job_id, spec)
        tracks = store.put("tracks", prepared["tracks"].to_bytes(), ".json")
        ingested = {"clip": prepared["clip"].to_dict(), "frames": prepared["finfo"].to_dict()}
        await jobs.put(queue, jobs.fact(job_id, "ingest", cid), ingested)
        await jobs.put(queue, jobs.fact(job_id, "track", cid), {"tracks": tracks.to_dict()})
        await jobs.put(queue, jobs.fact(job_id, "via", cid), {})

    try:
        stack.run(seed())
        client = stack.client()
        yield {
            "client": client,
            "queue": stack.queue,
            "job": job_id,
            "loop": stack.loop,
            "store": store,
            "tmp": tmp,
        }
        client.close()
    finally:
        stack.close()


def _upload(gw: dict[str, Any], data: bytes) -> common_pb2.Job:
    return gw["client"].stub.UploadFinishedProject(
        gateway_pb2.UploadFinishedProjectRequest(job_id=gw["job"], project=data), timeout=60
    )


def test_the_gateway_refuses_a_bad_project_naming_the_region_and_queues_nothing(
    prepared: dict[str, Any], gateway: dict[str, Any]
) -> None:
    doc = copy.deepcopy(prepared["project"])
    mid = sorted(doc["metadata"])[0]
    doc["metadata"][mid]["av"]["1"] = "²"
    before = gateway["loop"].run(gateway["queue"].pending("via_import"))
    with pytest.raises(grpc.RpcError) as exc:
        _upload(gateway, json.dumps(doc).encode())
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"region {mid}" in exc.value.details() and "is not a track id" in exc.value.details()
    assert gateway["loop"].run(gateway["queue"].pending("via_import")) == before
    job = _upload(gateway, json.dumps(prepared["project"]).encode())  # the corrected one is queued
    assert job.job_id == gateway["job"] and not job.error.message
    assert gateway["loop"].run(gateway["queue"].pending("via_import")) == before + 1


def test_mutated_uploads_through_the_gateway_are_never_internal(
    prepared: dict[str, Any], gateway: dict[str, Any]
) -> None:
    codes: dict[str, int] = {}

    @settings(
        max_examples=GATEWAY_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(mutated(json.dumps(prepared["project"])))
    def run(data: bytes) -> None:
        try:
            _upload(gateway, data)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
            assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), exc.details()
            assert exc.details()
        codes[code.name] = codes.get(code.name, 0) + 1

    run()
    assert sum(codes.values()) >= GATEWAY_EXAMPLES
    assert codes.get("OK", 0) > 0 and codes.get("INVALID_ARGUMENT", 0) > 0, codes


def test_a_failed_import_in_the_worker_is_recorded_per_clip_and_cleared_by_a_corrected_upload(
    prepared: dict[str, Any], gateway: dict[str, Any]
) -> None:
    """The worker's import of a bad project (one that got past the gateway, e.g. queued before the check
    existed) records the clip's error and finishes the item; the job does not fail; a good one clears it."""
    queue, store, cid, job_id = gateway["queue"], gateway["store"], prepared["cid"], gateway["job"]
    bad = copy.deepcopy(prepared["project"])
    mid = sorted(bad["metadata"])[0]
    bad["metadata"][mid]["xy"][1] = math.nan

    async def import_(data: bytes) -> None:
        ctx = Context.create(queue, store, gateway["tmp"] / "cache")
        item = {
            "job": job_id,
            "clip_id": cid,
            "finished": store.put("finished", data, ".via3.json").to_dict(),
            "name": f"{cid} (uploaded)",
            "settings": PipelineSettings().to_dict(),
            "actions": ActionList.from_obj(ACTIONS).to_dict(),
        }
        await via_import_item(ctx, item)

    gateway["loop"].run(import_(json.dumps(bad).encode()))
    job = gateway["client"].get(job_id)
    assert [(e.clip_id, e.where) for e in job.import_errors] == [
        (cid, f"{cid} (uploaded): region {mid} in file {bad['file'][bad['metadata'][mid]['vid']]['fname']}")
    ]
    assert "not a finite number" in job.import_errors[0].message
    assert job.state != common_pb2.JOB_STATE_FAILED and not job.error.message
    gateway["loop"].run(import_(json.dumps(prepared["project"]).encode()))
    job = gateway["client"].get(job_id)
    assert list(job.import_errors) == [] and not job.error.message
    assert gateway["loop"].run(jobs.get(queue, jobs.fact(job_id, "via_import", cid)))["labels"]
