"""The annotate service's HTTP app: the workbench of each job at ``/jobs/<job>/``, behind the gateway's
tokens and the gateway's rule of ownership.

  GET /healthz                  {"status": "ok"} (a valid token, as every gRPC health check needs)
  GET /api/jobs                 the caller's jobs and the jobs with clips assigned to the caller (an admin's
                                or the service's: every job)
  GET /jobs/<job>/              the page (and /jobs/<job>/static/...): the same for any well-formed id, no
                                token (a browser's navigation carries none; the page takes it from #token=)
  /jobs/<job>/api/...           the workbench's JSON API (``avaforge.workbench.app``) over the job's artifacts

Every API request needs a bearer token of the tokens file (``AVAFORGE_TOKENS``): none or an unknown one is
401. A job is open to its owner, the admins, and the people its owner assigned clips to (``/jobs/<job>/api/
assignments``: they may read the job's clips, and save only where the assignment makes them the clip's
annotator or reviewer, ``avaforge.workbench.assignments``); to anyone else it answers 404 exactly as an
unknown job does, so job ids cannot be probed. The job id is checked against the gateway's id form before
it is used as a key. Revisions and assignments are S3 objects written with conditional PUTs, so any number
of replicas may serve the same jobs.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from typing import Any

from fastapi import FastAPI
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from avaforge.storage import ArtifactStore
from avaforge.workbench.app import STATIC, Caller, create_app
from avaforge.workbench.assignments import Assignments
from avaforge.workbench.revisions import S3Revisions, job_prefix
from services.annotate.clips import JobClips
from services.common import jobs
from services.common.artifacts import LocalCache
from services.common.auth import LOCAL, Principal, Tokens

JOB_PATH = re.compile(r"^/jobs/([0-9a-f]{12})(/.*)?$")  # the gateway's job ids: uuid4 hex[:12]
MAX_APPS = 32  # per-job apps kept (each holds its clips' facts); the least recently used goes first
MEMBERS_TTL_S = 2.0  # an assigned person's access is re-checked after this (each save checks the role anew)


class AnnotateService:
    """The ASGI app. ``tokens`` None: every caller is the admin ``local`` (loopback only, as ``serve``
    enforces for the gRPC ports)."""

    def __init__(self, queue: Any, store: ArtifactStore, cache: LocalCache, tokens: Tokens | None) -> None:
        self.queue, self.store, self.cache, self.tokens = queue, store, cache, tokens
        self._apps: OrderedDict[str, FastAPI] = OrderedDict()
        self._members: dict[tuple[str, str], float] = {}  # (job, name) -> when found assigned
        self._static = StaticFiles(directory=STATIC)

    def principal(self, scope: Scope) -> Principal | None:
        if self.tokens is None:
            return LOCAL
        header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        return self.tokens.lookup(token) if token else None

    def _caller(self, token: str, owner: str | None) -> Caller | None:  # create_app's hook, per job
        who = LOCAL if self.tokens is None else self.tokens.lookup(token)
        return Caller(who.name, who.owns(owner)) if who else None

    def assignments(self, job: str) -> Assignments:
        return Assignments(S3Revisions(self.store, f"{job_prefix(job)}/_meta"))  # not a clip's stream name

    def _assigned(self, job: str, name: str) -> bool:
        """Is ``name`` an annotator or reviewer of a clip of ``job``? A yes is kept MEMBERS_TTL_S (an
        annotator's page asks for many frames); a no is read anew (a new assignment works at once)."""
        stamp = self._members.get((job, name))
        if stamp is not None and time.monotonic() - stamp < MEMBERS_TTL_S:
            return True
        if name not in self.assignments(job).people():
            self._members.pop((job, name), None)
            return False
        self._members[(job, name)] = time.monotonic()
        while len(self._members) > 16 * MAX_APPS:
            self._members.pop(next(iter(self._members)))
        return True

    async def _may_open(self, who: Principal, spec: dict[str, Any]) -> bool:
        if who.owns(spec.get("owner")):
            return True
        return await asyncio.to_thread(self._assigned, spec["job_id"], who.name)

    def _app(self, spec: dict[str, Any]) -> FastAPI:
        job = spec["job_id"]
        if job in self._apps:
            self._apps.move_to_end(job)
            return self._apps[job]
        clips = JobClips(self.queue, self.store, self.cache, spec, asyncio.get_running_loop())
        revisions = S3Revisions(self.store, job_prefix(job))  # <bucket>/annotate/<job>/<clip>/r000001.json
        owner = spec.get("owner")
        app = create_app(
            clips,
            revisions,
            annotator=LOCAL.name,
            authenticate=lambda token: self._caller(token, owner),
            assignments=self.assignments(job),
        )
        self._apps[job] = app
        while len(self._apps) > MAX_APPS:
            self._apps.popitem(last=False)
        return app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # nothing to start or stop per app: the process owns the connections
            await receive()  # lifespan.startup
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        await self._http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        m = JOB_PATH.match(path)
        if m and scope["method"] in ("GET", "HEAD"):
            rest = m.group(2)
            if rest is None:  # the page's relative URLs resolve below /jobs/<job>/
                query = scope.get("query_string", b"").decode("latin-1")
                return await RedirectResponse(path + "/" + (f"?{query}" if query else ""))(
                    scope, receive, send
                )
            if rest == "/":
                page = FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})
                return await page(scope, receive, send)
            if rest.startswith("/static/"):
                return await self._static(
                    {**scope, "path": rest[len("/static") :], "root_path": ""}, receive, send
                )
        who = self.principal(scope)
        if who is None:
            return await _json(
                {"detail": "a valid bearer token is required"}, 401, scope, receive, send, True
            )
        if path == "/healthz":
            return await _json({"status": "ok"}, 200, scope, receive, send)
        if path == "/api/jobs":
            return await _json(await self._jobs(who), 200, scope, receive, send)
        if not m or not (m.group(2) or "").startswith("/api/"):
            return await _json({"detail": "not found"}, 404, scope, receive, send)
        job = m.group(1)
        spec = await jobs.get(self.queue, job)
        if spec is None or not await self._may_open(who, spec):
            return await _json({"detail": f"no job {job!r}"}, 404, scope, receive, send)
        app = self._app(spec)
        await app({**scope, "root_path": scope.get("root_path", "") + f"/jobs/{job}"}, receive, send)

    async def _jobs(self, who: Principal) -> list[dict[str, Any]]:
        ids = [k for k in await jobs.keys(self.queue, "") if "." not in k]
        specs = [s for k in ids if (s := await jobs.get(self.queue, k)) and await self._may_open(who, s)]
        out = []
        for s in sorted(specs, key=lambda s: -s["created"]):
            tracked = await jobs.clip_facts(self.queue, s["job_id"], "track")
            out.append({"job_id": s["job_id"], "owner": s.get("owner", ""), "clips": tracked})
        return out


async def _json(
    body: Any, status: int, scope: Scope, receive: Receive, send: Send, challenge: bool = False
) -> None:
    headers = {"WWW-Authenticate": "Bearer"} if challenge else None
    resp: Response = JSONResponse(body, status, headers=headers)
    await resp(scope, receive, send)
