"""The workbench's JSON API without a browser (FastAPI's TestClient over the app on a real prepared work
folder): documents from the tracker, edits saved as revisions, 409 on a stale base, every id checked, frames
the same bytes training reads, crops cached, labels published for `avaforge build`; `avaforge annotate`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from avaforge.formats.timeline import rawframe_name
from avaforge.stages.via_import import ClipLabels
from avaforge.workbench.app import Caller, LocalClips, create_app, local_app
from avaforge.workbench.assignments import Assignments
from avaforge.workbench.revisions import LocalRevisions
from avaforge.workdir import Workdir
from tests.workbench_data import fresh_workdir

pytestmark = pytest.mark.slow  # the session's prepare (shared with the browser tests) takes a minute or more
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def work(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    return fresh_workdir(tmp_path_factory, tmp_path)


@pytest.fixture
def client(work: Path) -> TestClient:
    return TestClient(local_app(work, annotator="ann"))


def clip_id(work: Path) -> str:
    return Workdir(work).clip_ids()[0]  # the 6 s clip: labelled seconds 2, 3, 4


def test_document_edits_revisions_and_published_labels(client: TestClient, work: Path) -> None:
    cid = clip_id(work)
    assert client.get("/api/config").json()["groups"][0]["actions"][0] == {
        "id": 1,
        "name": "stand",
        "key": "1",
    }
    got = client.get(f"/api/clips/{cid}").json()
    doc = got["document"]
    assert got["revision"] == 0 and doc["seconds"] == [2, 3, 4] and doc["frame_size"] == [384, 288]
    assert len(doc["boxes"]) >= 8 and all(b["suggested"] for b in doc["boxes"])  # autolabel ran
    later = {(x["person"], x["second"]) for x in doc["boxes"]}
    b = next(x for x in doc["boxes"] if (x["person"], x["second"] + 1) in later)  # carried forward below
    op = {"op": "toggle_action", "person": b["person"], "second": b["second"], "action": 2}
    r1 = client.post(f"/api/clips/{cid}/edits", json={"base": 0, "op": op})
    assert r1.status_code == 200 and r1.json()["revision"] == 1
    stale = client.post(f"/api/clips/{cid}/edits", json={"base": 0, "op": op})
    assert stale.status_code == 409 and stale.json()["detail"]["head"] == 1
    r2 = client.post(
        f"/api/clips/{cid}/edits",
        json={"base": 1, "op": {"op": "carry_forward", "person": b["person"], "second": b["second"]}},
    )
    assert r2.status_code == 200 and r2.json()["revision"] == 2
    again = client.get(f"/api/clips/{cid}").json()
    assert again == {"revision": 2, "document": r2.json()["document"]}  # a reload reads what was saved
    assert client.get(f"/api/clips/{cid}/revisions/1").json()["document"] == r1.json()["document"]
    hist = client.get(f"/api/clips/{cid}/history").json()
    assert [(h["revision"], h["base"], h["author"], h["edit"]) for h in hist] == [
        (1, 0, "ann", "toggle_action"),
        (2, 1, "ann", "carry_forward"),
    ]
    labels = ClipLabels.load(Workdir(work).labels(cid))
    assert [(x.actions, x.source) for x in labels.boxes] == [((2,), "human"), ((2,), "propagated")]
    assert len(labels.unlabelled) == len(doc["boxes"]) - 2
    # undo: the page saves the earlier document again (PUT); a stale PUT conflicts too
    put = client.put(f"/api/clips/{cid}", json={"base": 2, "document": r1.json()["document"], "edit": "undo"})
    assert put.status_code == 200 and put.json()["revision"] == 3
    assert client.put(f"/api/clips/{cid}", json={"base": 2, "document": doc}).status_code == 409


def test_every_id_from_a_request_is_checked(client: TestClient, work: Path) -> None:
    cid = clip_id(work)
    doc = client.get(f"/api/clips/{cid}").json()["document"]
    b = doc["boxes"][0]
    for path in (
        "/api/clips/nope",
        "/api/clips/..%2F..%2Fetc/frames/1",
        f"/api/clips/{cid}/frames/0",
        f"/api/clips/{cid}/frames/{doc['num_frames'] + 1}",
        f"/api/clips/{cid}/crops/{b['person']}/6",
        f"/api/clips/{cid}/crops/999/{b['second']}",
        f"/api/clips/{cid}/revisions/7",
    ):
        assert client.get(path).status_code == 404, path
    assert client.get(f"/api/clips/{cid}/frames/x").status_code == 422
    assert client.get(f"/api/clips/{cid}/frames/1e3").status_code == 422
    bad_ops = [
        {"op": "format_disk"},
        {"op": "toggle_action", "person": b["person"], "second": b["second"], "action": 9},
        {"op": "toggle_action", "person": b["person"], "second": b["second"], "action": "1"},
        {"op": "delete_box", "person": 999, "second": 2},
        {"op": "move_box", "person": b["person"], "second": b["second"], "box": [1, 2, 3]},
        {"op": "merge", "keep": b["person"], "other": b["person"]},
        {"op": "split", "person": b["person"], "second": 2, "extra": 1},
    ]
    for op in bad_ops:
        r = client.post(f"/api/clips/{cid}/edits", json={"base": 0, "op": op})
        assert r.status_code == 422, (op, r.text)
    broken = {**doc, "boxes": [{**b, "box": [5, 5, 1, 1]}]}
    r = client.put(f"/api/clips/{cid}", json={"base": 0, "document": broken})
    assert r.status_code == 422 and "boxes[0]: box" in r.text
    other = {**doc, "clip_id": "another"}
    assert client.put(f"/api/clips/{cid}", json={"base": 0, "document": other}).status_code == 422
    assert client.get(f"/api/clips/{cid}").json()["revision"] == 0  # nothing was saved


def test_frames_are_the_rawframes_and_crops_are_cached(client: TestClient, work: Path) -> None:
    cid = clip_id(work)
    r = client.get(f"/api/clips/{cid}/frames/61")
    raw = (Workdir(work).clip(cid).rawframes / rawframe_name(61)).read_bytes()
    assert r.content == raw and r.headers["content-type"] == "image/jpeg"
    assert "max-age" in r.headers["cache-control"] and r.headers["etag"]
    b = client.get(f"/api/clips/{cid}").json()["document"]["boxes"][0]
    url = f"/api/clips/{cid}/crops/{b['person']}/{b['second']}"
    first = client.get(url)
    assert first.status_code == 200 and first.content[:2] == b"\xff\xd8"  # a JPEG
    cached = list((work / "annotate" / "crops" / cid).glob("*.jpg"))
    assert len(cached) == 1
    assert client.get(url).content == first.content
    assert len(list((work / "annotate" / "crops" / cid).glob("*.jpg"))) == 1
    spec = client.get("/api/openapi.json").json()
    assert "/api/clips/{clip_id}/edits" in spec["paths"]


def test_review_pass_and_authentication_hook(work: Path) -> None:
    cid = clip_id(work)
    clips = LocalClips(work)
    revisions = LocalRevisions(work / "annotate" / "revisions")
    app = create_app(clips, revisions, review=True, authenticate={"tok-1": "reviewer"}.get)
    client = TestClient(app)
    assert client.get("/api/clips").status_code == 401
    assert client.get("/api/clips", headers={"Authorization": "Bearer wrong"}).status_code == 401
    auth = {"Authorization": "Bearer tok-1"}
    b = client.get(f"/api/clips/{cid}", headers=auth).json()["document"]["boxes"][0]
    op = {"op": "accept_suggestion", "person": b["person"], "second": b["second"]}
    assert client.post(f"/api/clips/{cid}/edits", json={"base": 0, "op": op}, headers=auth).status_code == 200
    review = ClipLabels.load(clips.review_path(cid))
    assert [x.source for x in review.boxes] == ["suggestion"]
    assert not Workdir(work).labels(cid).exists()  # the annotator's labels are untouched
    assert [h.author for h in revisions.history(f"{cid}.review")] == ["reviewer"]


def test_annotate_command_serves_on_loopback_and_names_a_bad_folder(work: Path, tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    bad = subprocess.run(
        [sys.executable, "-m", "avaforge", "annotate", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1 and "work folder" in bad.stderr
    no_model = subprocess.run(
        [sys.executable, "-m", "avaforge", "annotate", str(work), "--checkpoint", str(tmp_path / "m.pth")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert no_model.returncode == 2 and len(no_model.stderr.splitlines()) == 1 and "m.pth" in no_model.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "avaforge", "annotate", str(work), "--port", "0", "--annotator", "kim"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert found, line
        url = found.group(0)
        assert httpx.get(url + "api/config", timeout=30).json()["annotator"] == "kim"
        assert "avaforge workbench" in httpx.get(url, timeout=30).text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert json.loads((work / "avaforge.json").read_text())  # untouched


def test_lint_and_the_review_disagreements(work: Path) -> None:
    cid = clip_id(work)
    annotator = TestClient(local_app(work, annotator="ann"))
    reviewer = TestClient(local_app(work, annotator="rev", review=True))
    boxes = annotator.get(f"/api/clips/{cid}").json()["document"]["boxes"]
    lint = annotator.get(f"/api/clips/{cid}/lint").json()
    assert {(i["person"], i["second"]) for i in lint if i["kind"] == "unlabelled"} == {
        (b["person"], b["second"]) for b in boxes
    }
    assert annotator.get(f"/api/clips/{cid}/disagreements").json()["reviewed"] is False
    for client, differ in ((annotator, False), (reviewer, True)):
        for rev, b in enumerate(boxes):
            action = 2 if differ and b is boxes[0] else 1  # the reviewer disagrees on the first box only
            op = {"op": "toggle_action", "person": b["person"], "second": b["second"], "action": action}
            saved = client.post(f"/api/clips/{cid}/edits", json={"base": rev, "op": op})
            assert saved.status_code == 200
            # each save answers with the clip's lint list (the page shows it without asking again)
            assert saved.json()["lint"] == client.get(f"/api/clips/{cid}/lint").json()
            assert len([i for i in saved.json()["lint"] if i["kind"] == "unlabelled"]) == len(boxes) - rev - 1
    assert not [i for i in annotator.get(f"/api/clips/{cid}/lint").json() if i["kind"] == "unlabelled"]
    got = annotator.get(f"/api/clips/{cid}/disagreements").json()
    assert got["reviewed"] and got["agreement"]["matched"] == len(boxes)
    assert [(d["second"], d["person_a"], d["actions_a"], d["actions_b"]) for d in got["disagreements"]] == [
        (boxes[0]["second"], boxes[0]["person"], [1], [2])
    ]


def test_assignments_decide_who_saves_what(work: Path) -> None:
    """The owner assigns a clip to kim with lee reviewing: kim's saves are the clip's labels, lee's its review
    pass, bob (not assigned) reads only and an unassigned clip is the owner's alone (403 with the reason);
    only the owner assigns; the clip list shows annotator, reviewer, status and the caller's role."""
    first, second = Workdir(work).clip_ids()
    clips = LocalClips(work)
    callers = {"tok-own": "owner", **{f"tok-{n}": Caller(n, False) for n in ("kim", "lee", "bob")}}
    app = create_app(
        clips,
        LocalRevisions(work / "annotate" / "revisions"),
        authenticate=callers.get,
        assignments=Assignments(LocalRevisions(work / "annotate")),
    )
    client = TestClient(app)

    def as_(who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer tok-{who}"}

    listed = client.get("/api/assignments", headers=as_("own")).json()
    assert [(r["clip_id"], r["annotator"], r["status"], r["role"]) for r in listed] == [
        (first, None, "unstarted", "annotator"),
        (second, None, "unstarted", "annotator"),
    ]
    assert [r["role"] for r in client.get("/api/assignments", headers=as_("kim")).json()] == [None, None]
    url = f"/api/assignments/{first}"
    assert client.put(url, json={"annotator": "kim"}, headers=as_("kim")).status_code == 403
    for bad in ({"annotator": "../x"}, {"annotator": "kim", "reviewer": "kim"}, {"reviewer": "lee"}):
        assert client.put(url, json=bad, headers=as_("own")).status_code == 422, bad
    assert (
        client.put("/api/assignments/nope", json={"annotator": "kim"}, headers=as_("own")).status_code == 404
    )
    got = client.put(url, json={"annotator": "kim", "reviewer": "lee"}, headers=as_("own")).json()
    assert got == {
        "clip_id": first,
        "annotator": "kim",
        "reviewer": "lee",
        "status": "unstarted",
        "role": "annotator",
    }

    boxes = client.get(f"/api/clips/{first}", headers=as_("kim")).json()["document"]["boxes"]

    def save(who: str, base: int, op: dict[str, Any]) -> int:
        r = client.post(f"/api/clips/{first}/edits", json={"base": base, "op": op}, headers=as_(who))
        assert r.status_code == 200, r.text
        return int(r.json()["revision"])

    def label_all(who: str, action: int) -> int:
        """Every box gets ``action``; the boxes lint still finds (tiny or outside the frame) are deleted."""
        rev = 0
        for b in boxes:
            rev = save(
                who,
                rev,
                {"op": "set_labels", "person": b["person"], "second": b["second"], "actions": [action]},
            )
        lint = client.get(f"/api/clips/{first}/lint", headers=as_(who)).json()
        for person, second in sorted({(i["person"], i["second"]) for i in lint}):
            rev = save(who, rev, {"op": "delete_box", "person": person, "second": second})
        assert client.get(f"/api/clips/{first}/lint", headers=as_(who)).json() == []
        return rev

    op = {"op": "set_labels", "person": boxes[0]["person"], "second": boxes[0]["second"], "actions": [1]}
    refused = client.post(f"/api/clips/{first}/edits", json={"base": 0, "op": op}, headers=as_("bob"))
    assert refused.status_code == 403 and "kim's (reviewer: lee)" in refused.json()["detail"]
    other = client.post(f"/api/clips/{second}/edits", json={"base": 0, "op": op}, headers=as_("kim"))
    assert other.status_code == 403 and "the job owner's" in other.json()["detail"]
    head = label_all("kim", 1)
    mine = [r for r in client.get("/api/assignments", headers=as_("kim")).json() if r["clip_id"] == first]
    assert mine[0]["status"] == "labelled" and mine[0]["role"] == "annotator"
    assert client.get(f"/api/clips/{first}", headers=as_("lee")).json()["revision"] == 0  # lee's own pass
    label_all("lee", 2)
    assert {b.actions for b in ClipLabels.load(Workdir(work).labels(first)).boxes} == {(1,)}  # kim's
    assert {b.actions for b in ClipLabels.load(Workdir(work).review_labels(first)).boxes} == {(2,)}  # lee's
    revisions = LocalRevisions(work / "annotate" / "revisions")
    assert {h.author for h in revisions.history(first)} == {"kim"}
    assert {h.author for h in revisions.history(f"{first}.review")} == {"lee"}
    rows = client.get("/api/assignments", headers=as_("lee")).json()
    assert [(r["status"], r["role"]) for r in rows] == [("reviewed", "reviewer"), ("unstarted", None)]
    assert client.get(f"/api/clips/{first}", headers=as_("bob")).status_code == 200  # reads
    # the owner adjudicates the clip's labels; unassigning opens the clip to the owner alone again
    kept = client.get(f"/api/clips/{first}", headers=as_("own")).json()["document"]["boxes"][0]  # kim's
    fix = {"op": "set_labels", "person": kept["person"], "second": kept["second"], "actions": [2]}
    head = save("own", head, fix)
    assert client.put(url, json={"annotator": None}, headers=as_("own")).json()["annotator"] is None
    again = client.post(f"/api/clips/{first}/edits", json={"base": head, "op": fix}, headers=as_("kim"))
    assert again.status_code == 403
    config = client.get("/api/config", headers=as_("kim")).json()
    assert (config["annotator"], config["manager"]) == ("kim", False)
    assert "/api/assignments/{clip_id}" in client.get("/api/openapi.json").json()["paths"]
