"""The workbench's ASGI app (FastAPI): the JSON API the page uses, the rawframes, crops and the static page.

``create_app(clips, revisions, ...)`` takes the clip access (``ClipSource``: the local work folder here,
the job's artifacts in the ``annotate`` service) and the revision store (``LocalRevisions``/``S3Revisions``)
as parameters; ``authenticate`` (optional) maps a bearer token to a ``Caller`` (a bare name: a manager), who
is then the author of the revisions, else the ``annotator`` name is. ``assignments`` (optional) say who
labels and who reviews each clip: a caller's role per clip (``assignments.role``) decides whether a save goes
to the clip's labels or its review pass, or is refused (403).

Every id from a request is checked before use: clip ids against the clip list (``ClipSource.clip_ids``),
frame numbers against the clip's frame count, person/second against the document; no request string is
joined into a path. JSON API under ``/api`` (OpenAPI at ``/api/openapi.json``); the page at ``/``.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from avaforge.formats.actions import ActionList
from avaforge.formats.errors import FormatError
from avaforge.formats.timeline import keyframe_index, rawframe_name
from avaforge.stages.via_import import ClipLabels
from avaforge.workbench import agreement
from avaforge.workbench.assignments import Assignment, AssignmentError, Assignments, Role, role
from avaforge.workbench.document import Document
from avaforge.workbench.edits import EditError, apply_edit
from avaforge.workbench.lint import lint
from avaforge.workbench.revisions import (
    ConditionalWritesUnsupported,
    Conflict,
    RevisionStore,
    UnknownRevision,
)

STATIC = Path(__file__).with_name("static")
FRAME_CACHE = "private, max-age=86400"  # rawframes of a prepared clip never change under the same URL
CROP_HEIGHT = 96
# keys of the page's commands; actions take the keys left over (``action_keys``)
COMMAND_KEYS = set("acdfmnswxyz?")
ACTION_KEYS = "1234567890qertuiopghjklvb"


class ClipSource(Protocol):
    """What the app reads and writes besides revisions: a local work folder or a job's artifacts."""

    def clip_ids(self) -> list[str]: ...

    def actions(self) -> ActionList: ...

    def initial_document(self, clip_id: str) -> Document: ...

    def rawframes(self, clip_id: str) -> Path: ...

    def crop_cache(self, clip_id: str) -> Path: ...

    def publish(self, clip_id: str, labels: ClipLabels, review: bool) -> None: ...


def action_keys(actions: ActionList) -> list[dict[str, Any]]:
    """The page's action buttons: per group its actions with the key that toggles each."""
    keys = iter(ACTION_KEYS)
    return [
        {
            "name": g.name,
            "exclusive": g.exclusive,
            "actions": [{"id": a.id, "name": a.name, "key": next(keys, "")} for a in g.actions],
        }
        for g in actions.groups
    ]


@dataclass(frozen=True)
class Caller:
    """Who calls. ``manager``: the job's owner or an admin (embedded: the one user), who assigns clips and
    may save any clip's labels."""

    name: str
    manager: bool


NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"  # assignments.NAME


class AssignRequest(BaseModel):
    annotator: str | None = Field(None, pattern=NAME_PATTERN, description="null (with no reviewer): unassign")
    reviewer: str | None = Field(None, pattern=NAME_PATTERN, description="optional; not the annotator")


class EditRequest(BaseModel):
    base: int = Field(ge=0, description="the revision the edit was made on (409 if no longer the newest)")
    op: dict[str, Any] = Field(description='one edit, e.g. {"op": "toggle_action", "person": 3, ...}')


class SaveRequest(BaseModel):
    base: int = Field(ge=0)
    document: dict[str, Any]
    edit: str = Field("save", max_length=40, pattern=r"^[a-z_]+$")


@dataclass
class _Settings:
    clips: ClipSource
    revisions: RevisionStore
    annotator: str
    review: bool  # embedded ``--review``: the one user reviews every clip without another reviewer
    assignments: Assignments | None


def create_app(
    clips: ClipSource,
    revisions: RevisionStore,
    *,
    annotator: str = "annotator",
    review: bool = False,
    authenticate: Callable[[str], Caller | str | None] | None = None,
    assignments: Assignments | None = None,
) -> FastAPI:
    app = FastAPI(
        title="avaforge workbench",
        description="Label people over time: a clip's document, its edits and revisions, frames and crops.",
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    cfg = _Settings(clips, revisions, annotator, review, assignments)
    actions = clips.actions()
    action_ids = [a.id for a in actions]

    async def principal(request: Request) -> Caller:  # async: no thread hop for an in-memory lookup
        if authenticate is None:
            return Caller(cfg.annotator, True)
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        who = authenticate(token) if token else None
        if who is None:
            raise HTTPException(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
        return Caller(who, True) if isinstance(who, str) else who

    def clip(clip_id: str) -> str:
        if clip_id not in cfg.clips.clip_ids():
            raise HTTPException(404, f"no clip {clip_id!r} in this work folder")
        return clip_id

    def assigned(clip_id: str) -> Assignment | None:
        return cfg.assignments.read().get(clip_id) if cfg.assignments else None

    def role_of(clip_id: str, who: Caller) -> Role | None:
        return role(assigned(clip_id), who.name, who.manager, cfg.review)

    def stream(clip_id: str, who: Caller) -> str:
        """The caller's document of the clip: the review pass for its reviewer, else the clip's labels."""
        return f"{clip_id}.review" if role_of(clip_id, who) == "reviewer" else clip_id

    def writable(clip_id: str, who: Caller) -> str:
        """The stream ``who`` saves to, or 403 when the clip is not theirs to label or review."""
        mine = role_of(clip_id, who)  # one read of the assignments
        if mine is None:
            a = assigned(clip_id)
            whose = f"{a.annotator}'s (reviewer: {a.reviewer or 'none'})" if a else "the job owner's"
            raise HTTPException(
                403, f"{who.name} may not save clip {clip_id!r}: it is {whose}; ask the owner to assign it"
            )
        return f"{clip_id}.review" if mine == "reviewer" else clip_id

    # The newest document of each stream, parsed once: a save puts its document here, a read checks only
    # the head (another process may have saved) before using it; a revision's bytes never change.
    parsed: dict[str, tuple[int, Document]] = {}

    def current(clip_id: str, s: str | None = None) -> tuple[int, Document]:
        """The newest document of stream ``s`` (default: the clip's labels)."""
        s = s or clip_id
        head = cfg.revisions.head(s)
        if head == 0:
            return 0, cfg.clips.initial_document(clip_id)
        known = parsed.get(s)
        if known is None or known[0] != head:
            doc = Document.from_bytes(cfg.revisions.read(s, head), f"{s} revision {head}", action_ids)
            known = parsed[s] = (head, doc)
        return known

    frame_counts: dict[str, int] = {}  # a clip's rawframes never change while it is served

    def num_frames(clip_id: str) -> int:
        if clip_id not in frame_counts:
            frame_counts[clip_id] = current(clip_id)[1].num_frames
        return frame_counts[clip_id]

    def save(clip_id: str, s: str, base: int, doc: Document, who: Caller, edit: str) -> dict[str, Any]:
        try:
            info = cfg.revisions.save(s, base, doc.to_bytes(), who.name, edit)
        except Conflict as exc:
            raise HTTPException(409, {"message": str(exc), "head": exc.head}) from None
        parsed[s] = (info.revision, doc)
        cfg.clips.publish(clip_id, doc.to_labels(), s != clip_id)
        # the lint panel's list comes with the save: the page needs no second request after each key
        return {"revision": info.revision, "document": doc.to_dict(), "lint": lint_list(doc)}

    def lint_list(doc: Document) -> list[dict[str, Any]]:
        return [
            {"kind": i.kind, "person": i.person_id, "second": i.second, "message": i.message}
            for i in lint(doc.as_labelled(), actions, doc.frame_size)
        ]

    @app.get("/api/config")
    def config(who: Caller = Depends(principal)) -> dict[str, Any]:
        return {
            "annotator": who.name,
            "manager": who.manager,
            "review": cfg.review,
            "groups": action_keys(actions),
        }

    @app.get("/api/clips")
    def list_clips(who: Caller = Depends(principal)) -> list[dict[str, Any]]:
        out = []
        for cid in cfg.clips.clip_ids():
            rev, doc = current(cid, stream(cid, who))
            labelled = sum(1 for b in doc.boxes if b.actions)
            out.append({"clip_id": cid, "revision": rev, "boxes": len(doc.boxes), "labelled": labelled})
        return out

    @app.get("/api/clips/{clip_id}")
    def get_clip(clip_id: str, who: Caller = Depends(principal)) -> dict[str, Any]:
        rev, doc = current(clip(clip_id), stream(clip_id, who))
        return {"revision": rev, "document": doc.to_dict()}

    @app.get("/api/clips/{clip_id}/revisions/{revision}")
    def get_revision(clip_id: str, revision: int, who: Caller = Depends(principal)) -> dict[str, Any]:
        try:
            raw = cfg.revisions.read(stream(clip(clip_id), who), revision)
        except UnknownRevision as exc:
            raise HTTPException(404, str(exc)) from None
        return {"revision": revision, "document": json.loads(raw)}

    @app.get("/api/clips/{clip_id}/history")
    def history(clip_id: str, who: Caller = Depends(principal)) -> list[dict[str, Any]]:
        return [i.to_dict() for i in cfg.revisions.history(stream(clip(clip_id), who))]

    @app.post("/api/clips/{clip_id}/edits", responses={409: {"description": "stale base revision"}})
    def edit(clip_id: str, req: EditRequest, who: Caller = Depends(principal)) -> dict[str, Any]:
        """Apply one edit to revision ``base`` and save the result as the next revision."""
        s = writable(clip(clip_id), who)
        head, doc = current(clip_id, s)
        if req.base != head:
            raise HTTPException(
                409, {"message": f"revision {req.base} is stale, the newest is {head}", "head": head}
            )
        try:
            new = apply_edit(doc, actions, req.op)
        except EditError as exc:
            raise HTTPException(422, str(exc)) from None
        return save(clip_id, s, head, new, who, str(req.op["op"]))

    @app.put("/api/clips/{clip_id}", responses={409: {"description": "stale base revision"}})
    def put_document(clip_id: str, req: SaveRequest, who: Caller = Depends(principal)) -> dict[str, Any]:
        """Save a whole document (the page's undo/redo) as the revision after ``base``."""
        s = writable(clip(clip_id), who)
        try:
            doc = Document.from_dict(req.document, "document", action_ids)
        except FormatError as exc:
            raise HTTPException(422, str(exc)) from None
        if doc.clip_id != clip_id:
            raise HTTPException(422, f"document is for clip {doc.clip_id!r}, not {clip_id!r}")
        return save(clip_id, s, req.base, doc, who, req.edit)

    @app.get("/api/clips/{clip_id}/frames/{frame}", response_class=FileResponse)
    def frame(clip_id: str, frame: int, who: Caller = Depends(principal)) -> FileResponse:
        """The rawframe ``img_%05d.jpg`` training reads (1-based)."""
        n = num_frames(clip(clip_id))
        if not 1 <= frame <= n:
            raise HTTPException(404, f"frame {frame} is outside 1..{n}")
        path = cfg.clips.rawframes(clip_id) / rawframe_name(frame)
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": FRAME_CACHE})

    @app.get("/api/clips/{clip_id}/crops/{person}/{second}", response_class=Response)
    def crop(clip_id: str, person: int, second: int, who: Caller = Depends(principal)) -> Response:
        """A thumbnail of a person's box at a labelled second (made once per box position, then cached)."""
        _, doc = current(clip(clip_id), stream(clip_id, who))
        b = doc.box(person, second)
        if b is None:
            raise HTTPException(404, f"person {person} has no box at second {second}")
        key = hashlib.sha256(json.dumps([person, second, b.box]).encode()).hexdigest()[:24]
        cached = cfg.clips.crop_cache(clip_id) / f"{key}.jpg"
        if not cached.is_file():
            _write_crop(cfg.clips.rawframes(clip_id) / rawframe_name(keyframe_index(second)), b.box, cached)
        return FileResponse(cached, media_type="image/jpeg", headers={"Cache-Control": FRAME_CACHE})

    @app.get("/api/clips/{clip_id}/lint")
    def lint_clip(clip_id: str, who: Caller = Depends(principal)) -> list[dict[str, Any]]:
        """Boxes without labels, exclusive groups violated, boxes outside the frame or tiny."""
        return lint_list(current(clip(clip_id), stream(clip_id, who))[1])

    @app.get("/api/clips/{clip_id}/disagreements")
    def disagreements(clip_id: str, who: Caller = Depends(principal)) -> dict[str, Any]:
        """The annotator's and the reviewer's labels side by side: agreement and the disagreements."""
        clip(clip_id)
        docs = []
        for s in (clip_id, f"{clip_id}.review"):
            head, doc = current(clip_id, s)
            if head == 0:
                return {"reviewed": False, "agreement": None, "disagreements": []}
            docs.append(doc.as_labelled())
        a, b = docs
        return {
            "reviewed": True,
            "agreement": agreement.agreement(a, b, actions).to_dict(),
            "disagreements": [d.to_dict() for d in agreement.disagreements(a, b, actions)],
        }

    def status(clip_id: str) -> str:
        """unstarted (nothing saved), in progress (lint finds something), labelled (lint-clean labels),
        reviewed (labelled, and a lint-clean review pass)."""

        def clean(s: str) -> bool | None:  # None: nothing saved
            head, doc = current(clip_id, s)
            return None if head == 0 else not lint(doc.as_labelled(), actions, doc.frame_size)

        labelled = clean(clip_id)
        if labelled is None:
            return "unstarted"
        if not labelled:
            return "in progress"
        return "reviewed" if clean(f"{clip_id}.review") else "labelled"

    def assignment_row(clip_id: str, who: Caller) -> dict[str, Any]:
        a = assigned(clip_id)
        return {
            "clip_id": clip_id,
            "annotator": a.annotator if a else None,
            "reviewer": a.reviewer if a else None,
            "status": status(clip_id),
            "role": role_of(clip_id, who),  # yours: annotator, reviewer, or null (read only)
        }

    @app.get("/api/assignments")
    def list_assignments(who: Caller = Depends(principal)) -> list[dict[str, Any]]:
        """Every clip: its annotator and reviewer (null: unassigned, open to the owner), its status
        (unstarted / in progress / labelled / reviewed) and the caller's role on it."""
        return [assignment_row(cid, who) for cid in cfg.clips.clip_ids()]

    @app.put(
        "/api/assignments/{clip_id}",
        responses={
            403: {"description": "not the job's owner or an admin"},
            422: {"description": "bad names"},
        },
    )
    def assign(clip_id: str, req: AssignRequest, who: Caller = Depends(principal)) -> dict[str, Any]:
        """Assign the clip to an annotator and optionally a reviewer (both null: unassign); owner or admin."""
        clip(clip_id)
        if not who.manager:
            raise HTTPException(403, f"{who.name} may not assign clips: only the job's owner or an admin may")
        if cfg.assignments is None:
            raise HTTPException(501, "this server keeps no assignments")
        if req.annotator is None and req.reviewer is not None:
            raise HTTPException(422, "a reviewer needs an annotator to review")
        try:
            new = Assignment(req.annotator, req.reviewer) if req.annotator is not None else None
        except AssignmentError as exc:
            raise HTTPException(422, str(exc)) from None
        try:
            cfg.assignments.set(clip_id, new, who.name)
        except Conflict as exc:
            raise HTTPException(409, {"message": str(exc), "head": exc.head}) from None
        return assignment_row(clip_id, who)

    @app.exception_handler(FormatError)
    def format_error(_request: Request, exc: FormatError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(ConditionalWritesUnsupported)
    def unsafe_store(_request: Request, exc: ConditionalWritesUnsupported) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)  # the deployment's S3 to fix

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _write_crop(frame: Path, box: tuple[float, float, float, float], out: Path) -> None:
    from PIL import Image

    from avaforge.fsutil import atomic_write_bytes

    with Image.open(frame) as img:
        x1, y1, x2, y2 = box
        pad = 0.1 * max(x2 - x1, y2 - y1)
        region = img.crop(
            (
                max(0, int(x1 - pad)),
                max(0, int(y1 - pad)),
                min(img.width, int(x2 + pad)),
                min(img.height, int(y2 + pad)),
            )
        )
        scale = CROP_HEIGHT / max(region.height, 1)
        thumb = region.resize((max(1, round(region.width * scale)), CROP_HEIGHT))
        buf = io.BytesIO()
        thumb.convert("RGB").save(buf, "JPEG", quality=85)
    atomic_write_bytes(out, buf.getvalue())


class LocalClips:
    """A local work folder (``avaforge prepare``'s): documents start from its tracks and autolabel's
    suggestions, or a trained checkpoint's predictions when one is given (``checkpoint`` with its mmaction2
    ``config``: avaforge.workbench.assist); each save publishes the labels at ``Workdir.labels`` (a review
    pass at the review path)."""

    def __init__(
        self,
        workdir: str | Path,
        checkpoint: str | Path | None = None,
        config: str | Path | None = None,
        threshold: float = 0.5,
    ) -> None:
        from avaforge.workdir import Workdir

        self.wd = Workdir(Path(workdir))
        self._settings = self.wd.settings()
        self._actions = self.wd.actions()
        self._clips = self.wd.clip_ids()
        self._model = None
        if checkpoint is not None:
            ckpt = Path(checkpoint)
            cfg = Path(config) if config else ckpt.with_name("config.py")
            for path in (ckpt, cfg):
                if not path.is_file():
                    raise FormatError(
                        "no such file (a checkpoint and its config from avaforge train)", str(path)
                    )
            self._model = (ckpt, cfg, threshold)
        self._initial: dict[str, Document] = {}  # made once per clip: tracks are read, a model runs once

    def clip_ids(self) -> list[str]:
        return self._clips

    def actions(self) -> ActionList:
        return self._actions

    def initial_document(self, clip_id: str) -> Document:
        from avaforge.runner import _load_clip, _suggestions
        from avaforge.workbench.document import build_document, with_predictions

        if clip_id in self._initial:
            return self._initial[clip_id]
        _, _, finfo, tracks = _load_clip(self.wd, clip_id)
        doc = build_document(
            finfo,
            tracks,
            self._settings.via.min_score,
            _suggestions(self.wd, clip_id),
            [a.id for a in self._actions],
        )
        if self._model is not None:
            from avaforge.workbench.assist import predict

            checkpoint, config, threshold = self._model
            scores = predict(checkpoint, config, self.rawframes(clip_id), doc.as_labelled(), self._actions)
            doc = with_predictions(doc, scores, self._actions, threshold)
        self._initial[clip_id] = doc
        return doc

    def rawframes(self, clip_id: str) -> Path:
        return self.wd.clip(clip_id).rawframes

    def crop_cache(self, clip_id: str) -> Path:
        return self.wd.root / "annotate" / "crops" / clip_id

    def review_path(self, clip_id: str) -> Path:
        return self.wd.review_labels(clip_id)

    def publish(self, clip_id: str, labels: ClipLabels, review: bool) -> None:
        labels.save(self.review_path(clip_id) if review else self.wd.labels(clip_id))


def local_app(
    workdir: str | Path,
    annotator: str = "annotator",
    review: bool = False,
    checkpoint: str | Path | None = None,
    config: str | Path | None = None,
) -> FastAPI:
    """The app over a local work folder, revisions in ``WORKDIR/annotate/revisions``, assignments in
    ``WORKDIR/annotate/assignments``."""
    from avaforge.workbench.revisions import LocalRevisions

    clips = LocalClips(workdir, checkpoint, config)
    return create_app(
        clips,
        LocalRevisions(clips.wd.root / "annotate" / "revisions"),
        annotator=annotator,
        review=review,
        assignments=Assignments(LocalRevisions(clips.wd.root / "annotate")),
    )
