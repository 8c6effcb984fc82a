"""VIA 3 projects: build one per clip (one file and one view per keyframe) and parse finished ones.

Layout written (as VIA's "Code Documentation for VIA Version 3.x.y" describes the format): attribute "1" is
the text attribute ``person`` holding the track id and shown as the region label; attributes "2".. are one
checkbox attribute per action group whose option ids are the action ids (a radio attribute for an exclusive
group: VIA then lets the annotator pick only one), with ``default_option_id: ""`` and
no ticks in ``av`` (VIA would otherwise pre-tick every new box). A region is
``{vid, flg: 0, z: [], xy: [2, x, y, w, h], av}`` in pixels. Ids are derived from
the input, so the same input gives the same bytes.

Files are the keyframe images ``{video_id}_{second:04d}.jpg``; parsing maps a region to its second through
``view[vid].fid_list`` -> ``file[fid].fname`` (never assuming view id == file id).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from avaforge.formats.actions import ActionList
from avaforge.formats.ava_csv import check_video_id
from avaforge.formats.errors import FormatError, decode_utf8

PERSON_ATTRIBUTE = "person"
PERSON_AID = "1"
ANCHOR_IMAGE_REGION = "FILE1_Z0_XY1"
ATTR_TEXT, ATTR_CHECKBOX, ATTR_RADIO = 1, 2, 3
FILE_IMAGE = 2
FILE_LOC_LOCAL = 1  # the annotator adds the keyframe folder in VIA; files are matched by fname
SHAPE_RECT = 2
EDGE_TOLERANCE_PX = 1.0  # VIA lets a box reach the border; allow sub-pixel overshoot, clip it
_REQUIRED_KEYS = ("project", "config", "attribute", "file", "view", "metadata")


def keyframe_image_name(video_id: str, second: int) -> str:
    return f"{video_id}_{second:04d}.jpg"


@dataclass(frozen=True)
class ViaBox:
    """A pre-filled region: pixel box (x1, y1, x2, y2), its track id, optional pre-ticked action ids."""

    x1: float
    y1: float
    x2: float
    y2: float
    track_id: int | None = None
    actions: tuple[int, ...] = ()


@dataclass(frozen=True)
class ViaKeyframe:
    second: int
    boxes: tuple[ViaBox, ...] = ()


def build_project(
    video_id: str, keyframes: Iterable[ViaKeyframe], actions: ActionList, *, pname: str | None = None
) -> dict[str, Any]:
    """A VIA 3 project for one clip; ``pname`` defaults to the video id, which parsing checks."""
    check_video_id(video_id)
    attributes: dict[str, Any] = {
        PERSON_AID: {
            "aname": PERSON_ATTRIBUTE,
            "anchor_id": ANCHOR_IMAGE_REGION,
            "type": ATTR_TEXT,
            "desc": "track id of this person (keep it; clear it for a new person you draw)",
            "options": {},
            "default_option_id": "",
        }
    }
    group_aid: dict[int, str] = {}
    radio: set[str] = set()
    for i, group in enumerate(actions.groups, start=2):
        aid = str(i)
        attributes[aid] = {
            "aname": group.name,
            "anchor_id": ANCHOR_IMAGE_REGION,
            "type": ATTR_RADIO if group.exclusive else ATTR_CHECKBOX,
            "desc": f"actions: {group.name}" + (" (exactly one)" if group.exclusive else ""),
            "options": {str(a.id): a.name for a in group.actions},
            "default_option_id": "",
        }
        for a in group.actions:
            group_aid[a.id] = aid
        if group.exclusive:
            radio.add(aid)

    files: dict[str, Any] = {}
    views: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    ordered = sorted(keyframes, key=lambda k: k.second)
    seconds = [k.second for k in ordered]
    if len(set(seconds)) != len(seconds):
        raise FormatError(f"keyframe seconds repeat: {seconds}", video_id)
    for n, kf in enumerate(ordered, start=1):
        vid = str(n)
        fname = keyframe_image_name(video_id, kf.second)
        files[vid] = {"fid": n, "fname": fname, "type": FILE_IMAGE, "loc": FILE_LOC_LOCAL, "src": fname}
        views[vid] = {"fid_list": [n]}
        tracks = [b.track_id for b in kf.boxes if b.track_id is not None]
        if len(set(tracks)) != len(tracks):
            raise FormatError(f"second {kf.second}: a track id appears on two boxes", video_id)
        for k, box in enumerate(sorted(kf.boxes, key=_box_order)):
            if not (box.x1 < box.x2 and box.y1 < box.y2):
                raise FormatError(f"second {kf.second}: empty box {box}", video_id)
            av: dict[str, str] = {}
            if box.track_id is not None:
                av[PERSON_AID] = str(box.track_id)
            ticks: dict[str, list[str]] = {}
            for action_id in box.actions:
                if action_id not in group_aid:
                    raise FormatError(f"second {kf.second}: unknown action id {action_id}", video_id)
                ticks.setdefault(group_aid[action_id], []).append(str(action_id))
            for aid in sorted(ticks, key=int):
                if aid in radio and len(set(ticks[aid])) > 1:
                    raise FormatError(
                        f"second {kf.second}: actions {sorted(set(ticks[aid]))} ticked in the exclusive "
                        f"group {attributes[aid]['aname']!r}",
                        video_id,
                    )
                av[aid] = ",".join(sorted(set(ticks[aid]), key=int))
            mid = f"{vid}_p{box.track_id}" if box.track_id is not None else f"{vid}_b{k}"
            metadata[mid] = {
                "vid": vid,
                "flg": 0,
                "z": [],
                "xy": [SHAPE_RECT, _r(box.x1), _r(box.y1), _r(box.x2 - box.x1), _r(box.y2 - box.y1)],
                "av": av,
            }
    return {
        "project": {
            "pid": "__VIA_PROJECT_ID__",
            "rev": "__VIA_PROJECT_REV_ID__",
            "rev_timestamp": "__VIA_PROJECT_REV_TIMESTAMP__",
            "pname": pname if pname is not None else video_id,
            "creator": "avaforge (VGG Image Annotator 3 project format)",
            "created": 0,
            "vid_list": list(views),
        },
        "config": {
            "file": {"loc_prefix": {"1": "", "2": "", "3": "", "4": ""}},
            "ui": {
                "file_content_align": "center",
                "file_metadata_editor_visible": True,
                "spatial_metadata_editor_visible": True,
                "spatial_region_label_attribute_id": PERSON_AID,
            },
        },
        "attribute": attributes,
        "file": files,
        "view": views,
        "metadata": metadata,
    }


def dumps_project(project: dict[str, Any]) -> bytes:
    """One-line UTF-8 JSON like VIA saves it; key order is insertion order, so output is deterministic."""
    return json.dumps(project, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _box_order(b: ViaBox) -> tuple[int, float, float]:
    return (b.track_id if b.track_id is not None else 1 << 30, b.x1, b.y1)


def _r(v: float) -> float:
    return round(float(v), 2)


# ---- parsing a finished project ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedRegion:
    region_id: str
    fname: str
    second: int
    box: tuple[float, float, float, float]  # pixels x1, y1, x2, y2, clipped to the image
    person: str | None  # the person attribute as left by the annotator ("" or None for a new person)
    actions: tuple[int, ...]
    where: str

    def normalised(self, width: int, height: int) -> tuple[float, float, float, float]:
        x1, y1, x2, y2 = self.box
        return (x1 / width, y1 / height, x2 / width, y2 / height)


@dataclass
class ParsedProject:
    video_id: str
    seconds: list[int]
    regions: list[ParsedRegion] = field(default_factory=list)

    @property
    def unlabelled(self) -> list[ParsedRegion]:
        """Boxes the annotator left without any tick: reported, never silently dropped."""
        return [r for r in self.regions if not r.actions]


def load_project_json(data: bytes | str, where: str) -> dict[str, Any]:
    """Decode a VIA 3 JSON file (one-line or pretty), with clear errors for other shapes."""
    text = decode_utf8(data, where) if isinstance(data, bytes) else data
    if not text.strip():
        raise FormatError("empty file, expected a VIA 3 project (JSON)", where)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", where) from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise FormatError(f"not a usable JSON file: {exc}", where) from None
    except RecursionError:
        raise FormatError("not a usable JSON file: nested too deeply", where) from None
    if not isinstance(obj, dict):
        raise FormatError(f"top level is a JSON {type(obj).__name__}, expected a VIA 3 project object", where)
    if "_via_img_metadata" in obj or "_via_settings" in obj:
        raise FormatError("this is a VIA 2 project; save it from VIA 3 (via_image_annotator 3.x)", where)
    missing = [k for k in _REQUIRED_KEYS if k not in obj]
    if missing:
        raise FormatError(f"not a VIA 3 project: missing keys {missing}", where)
    for key in _REQUIRED_KEYS:
        if not isinstance(obj[key], dict):
            raise FormatError(f"'{key}' must be an object, got {type(obj[key]).__name__}", where)
    return obj


def parse_project(
    data: bytes | str | dict[str, Any],
    *,
    where: str,
    actions: ActionList,
    video_id: str,
    image_size: tuple[int, int],
    seconds: Sequence[int] | None = None,
) -> ParsedProject:
    """Read a finished project for clip ``video_id`` back into regions with action ids.

    Rejects (FormatError naming the file and region): another clip's project, files that are not this clip's
    keyframes (or not among ``seconds``), views or files that do not exist, non-rectangles, boxes outside the
    ``image_size`` (width, height), attributes or options that are not in ``actions``.
    """
    obj = data if isinstance(data, dict) else load_project_json(data, where)
    pname = obj["project"].get("pname") if isinstance(obj["project"], dict) else None
    if pname != video_id:
        raise FormatError(f"project is for clip {pname!r}, expected {video_id!r}", where)
    width, height = image_size
    attr_kinds = _attribute_kinds(obj["attribute"], actions, where)
    files = obj["file"]
    fname_re = re.compile(re.escape(video_id) + r"_([0-9]{4,9})\.jpg")  # ASCII digits only
    allowed = set(seconds) if seconds is not None else None

    view_second: dict[str, tuple[str, int]] = {}
    for vid, view in obj["view"].items():
        vwhere = f"{where}: view {vid}"
        fids = view.get("fid_list") if isinstance(view, dict) else None
        if not isinstance(fids, list) or len(fids) != 1:
            raise FormatError(f"fid_list {fids!r} must list exactly one file", vwhere)
        fid = str(fids[0])
        if fid not in files or not isinstance(files[fid], dict):
            raise FormatError(f"file {fid} is missing from 'file'", vwhere)
        fname = files[fid].get("fname")
        m = fname_re.fullmatch(fname) if isinstance(fname, str) else None
        if not m:
            raise FormatError(f"file {fname!r} is not a keyframe image of clip {video_id!r}", vwhere)
        second = int(m[1])
        if allowed is not None and second not in allowed:
            raise FormatError(f"file {fname!r}: second {second} is not a keyframe of this clip", vwhere)
        view_second[str(vid)] = (fname, second)

    parsed = ParsedProject(video_id=video_id, seconds=sorted({s for _, s in view_second.values()}))
    for mid, md in obj["metadata"].items():
        if not isinstance(md, dict):
            raise FormatError("metadata entry is not an object", f"{where}: region {mid}")
        vid = str(md.get("vid"))
        if vid not in view_second:
            raise FormatError(f"view {vid!r} does not exist", f"{where}: region {mid}")
        fname, second = view_second[vid]
        rwhere = f"{where}: region {mid} in file {fname}"
        box = _rectangle(md.get("xy"), md.get("z"), width, height, rwhere)
        person, action_ids = _region_values(md.get("av", {}), attr_kinds, rwhere)
        parsed.regions.append(ParsedRegion(mid, fname, second, box, person, action_ids, rwhere))
    parsed.regions.sort(key=lambda r: (r.second, r.region_id))
    return parsed


def _attribute_kinds(
    attributes: dict[str, Any], actions: ActionList, where: str
) -> dict[str, str | dict[str, int]]:
    """Map attribute id -> "person", or {option id -> action id} for an action group, or "foreign"."""
    by_id = actions.by_id()
    kinds: dict[str, str | dict[str, int]] = {}
    for aid, attr in attributes.items():
        awhere = f"{where}: attribute {aid}"
        if not isinstance(attr, dict):
            raise FormatError("attribute is not an object", awhere)
        if attr.get("aname") == PERSON_ATTRIBUTE:
            kinds[aid] = "person"
            continue
        options = attr.get("options")
        if attr.get("type") not in (ATTR_CHECKBOX, ATTR_RADIO) or not isinstance(options, dict):
            kinds[aid] = "foreign"
            continue
        mapping: dict[str, int] = {}
        for opt_id, opt_name in options.items():
            action = by_id.get(int(opt_id)) if ascii_int(opt_id) else None
            if action is None or action.name != opt_name:
                kinds[aid] = "foreign"
                break
            mapping[str(opt_id)] = action.id
        else:
            kinds[aid] = mapping
    return kinds


def _rectangle(xy: Any, z: Any, width: int, height: int, where: str) -> tuple[float, float, float, float]:
    if not isinstance(xy, list) or not xy:
        kind = "a temporal segment" if z else "a region without shape"
        raise FormatError(f"{kind}, expected a rectangle", where)
    if xy[0] != SHAPE_RECT or isinstance(xy[0], bool):
        names = {
            1: "point",
            3: "circle",
            4: "ellipse",
            5: "line",
            6: "polyline",
            7: "polygon",
            8: "extreme rectangle",
            9: "extreme circle",
        }
        name = names.get(xy[0]) if isinstance(xy[0], int) and not isinstance(xy[0], bool) else None
        raise FormatError(f"shape is a {name or f'shape {xy[0]!r}'}, only rectangles are allowed", where)
    if len(xy) != 5 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in xy[1:]):
        raise FormatError(f"rectangle {xy!r} must be [2, x, y, w, h] numbers", where)
    try:
        x, y, w, h = (float(v) for v in xy[1:])
    except OverflowError:  # an integer beyond any float
        raise FormatError(f"rectangle {xy!r} has a coordinate too large for a number", where) from None
    if not all(math.isfinite(v) for v in (x, y, w, h)):  # NaN/Infinity: Python's json reads them
        raise FormatError(f"rectangle {xy!r} has a coordinate that is not a finite number", where)
    if w <= 0 or h <= 0:
        raise FormatError(f"rectangle has non-positive size {w}x{h}", where)
    tol = EDGE_TOLERANCE_PX
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        raise FormatError(
            f"box x={x:g} y={y:g} w={w:g} h={h:g} lies outside the {width}x{height} image", where
        )
    x1, y1 = max(x, 0.0), max(y, 0.0)
    x2, y2 = min(x + w, float(width)), min(y + h, float(height))
    if x2 <= x1 or y2 <= y1:
        raise FormatError("box is empty after clipping to the image", where)
    return (x1, y1, x2, y2)


def ascii_int(text: Any, max_digits: int = 9) -> bool:
    """An id typed by a person: ASCII digits only (``str.isdigit`` also takes "²", which ``int`` refuses)."""
    return isinstance(text, str) and re.fullmatch(f"[0-9]{{1,{max_digits}}}", text) is not None


def _region_values(
    av: Any, kinds: dict[str, str | dict[str, int]], where: str
) -> tuple[str | None, tuple[int, ...]]:
    if not isinstance(av, dict):
        raise FormatError(f"av {av!r} is not an object", where)
    person: str | None = None
    action_ids: set[int] = set()
    for aid, value in av.items():
        kind = kinds.get(str(aid))
        if kind is None:
            raise FormatError(f"attribute id {aid!r} is not defined in the project", where)
        if kind == "person":
            person = str(value).strip() if value is not None else None
            continue
        text = "" if value is None else str(value).strip()
        if kind == "foreign":
            if text:
                raise FormatError(
                    f"attribute {aid!r} is not one of the action groups of the action list", where
                )
            continue
        assert isinstance(kind, dict)
        for opt in filter(None, (o.strip() for o in text.split(","))):
            if opt not in kind:
                raise FormatError(
                    f"option id {opt!r} of attribute {aid!r} is not an action of that group", where
                )
            action_ids.add(kind[opt])
    return person, tuple(sorted(action_ids))
