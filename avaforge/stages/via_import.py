"""VIA import + merge: a finished project back to labelled boxes with final person ids.

Person ids, per second in order:
1. a region whose ``person`` field holds an integer keeps it: pre-filled boxes carry their track id, and an
   annotator may type an id to mend a tracker id switch;
2. a region with an empty ``person`` field is matched to the tracked boxes of that second by IoU
   (Hungarian, IoU >= ``match_iou``) and takes the track's id;
3. what is still unmatched is a person the annotator drew: it is matched by IoU to the previous second's
   drawn boxes to carry their new id forward, else gets a fresh id.
Boxes the annotator deleted simply do not come back. With ``propagate``, a box left unticked inherits its
person's last actions (the seed's users copied labels by hand across seconds); a tick changes them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from avaforge.boxes import Boxes
from avaforge.formats.actions import ActionList
from avaforge.formats.ava_csv import check_video_id
from avaforge.formats.errors import FormatError
from avaforge.formats.via3 import ParsedRegion, ascii_int, parse_project
from avaforge.fsutil import atomic_write_bytes
from avaforge.settings import ImportSettings
from avaforge.stages.frames import FramesInfo
from avaforge.stages.track import Tracks
from avaforge.tracking.metrics import match_boxes

# human: a person's label; machine: autolabel/model label never touched by a person; suggestion: a machine
# suggestion a person accepted (the workbench); propagated: carried forward from the person's last second.
Source = Literal["human", "machine", "suggestion", "propagated"]
SOURCES: tuple[Source, ...] = ("human", "machine", "suggestion", "propagated")


@dataclass(frozen=True)
class LabelledBox:
    second: int
    box: tuple[float, float, float, float]  # normalised x1, y1, x2, y2
    person_id: int
    actions: tuple[int, ...]
    source: Source
    region: str


@dataclass
class ClipLabels:
    clip_id: str
    boxes: list[LabelledBox] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)  # regions (where) with no action: reported, no rows
    drawn: int = 0  # people the annotator added

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "clip_id": self.clip_id,
                "boxes": [asdict(b) for b in self.boxes],
                "unlabelled": self.unlabelled,
                "drawn": self.drawn,
            },
            indent=1,
        ).encode()

    def save(self, path: str | Path) -> None:
        atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> ClipLabels:
        data = json.loads(Path(path).read_text())
        boxes = [
            LabelledBox(**{**b, "box": tuple(b["box"]), "actions": tuple(b["actions"])})
            for b in data["boxes"]
        ]
        return cls(data["clip_id"], boxes, data["unlabelled"], data["drawn"])


def project_clip_id(data: bytes | dict[str, Any], where: str) -> str:
    """The clip a finished project belongs to (its ``pname``)."""
    from avaforge.formats.via3 import load_project_json

    obj = data if isinstance(data, dict) else load_project_json(data, where)
    pname = obj["project"].get("pname") if isinstance(obj["project"], dict) else None
    if not isinstance(pname, str) or not pname:
        raise FormatError("project has no name; avaforge names each project after its clip", where)
    if ".." in pname or pname.endswith("."):  # clip ids are KV key tokens too
        raise FormatError(f"project name {pname!r} is not a clip id", where)
    return check_video_id(pname, where)


def import_project(
    data: bytes | dict[str, Any],
    where: str,
    frames: FramesInfo,
    tracks: Tracks,
    actions: ActionList,
    settings: ImportSettings,
    machine: Mapping[tuple[int, int], tuple[int, ...]] | None = None,
) -> ClipLabels:
    parsed = parse_project(
        data,
        where=where,
        actions=actions,
        video_id=frames.clip_id,
        image_size=(frames.width, frames.height),
        seconds=frames.labelled_seconds,
    )
    by_second: dict[int, list[ParsedRegion]] = {}
    for region in parsed.regions:
        by_second.setdefault(region.second, []).append(region)
    next_id = max([*tracks.track_ids, *_typed_ids(parsed.regions)], default=-1) + 1
    labels = ClipLabels(frames.clip_id)
    size = (frames.width, frames.height)
    prev_drawn = Boxes.empty("pixels", size, tracked=True)
    last_actions: dict[int, tuple[int, ...]] = {}
    for second in sorted(by_second):
        regions = by_second[second]
        ids: dict[str, int] = {}
        for r in regions:
            if r.person:
                ids[r.region_id] = _person_id(r)
        _check_unique(ids, regions, second, where)
        # 2. empty person field: IoU to this second's tracks not already claimed
        free = [r for r in regions if r.region_id not in ids]
        tracked = tracks.at_second(second)
        tracked = tracked.select(~np.isin(tracked.tracked_ids, list(ids.values())))
        for i, j in match_boxes(_boxes(free, size), tracked, settings.match_iou):
            ids[free[i].region_id] = int(tracked.tracked_ids[j])
        # 3. drawn people: carry forward by IoU from the previous second's drawn boxes
        drawn = [r for r in regions if r.region_id not in ids]
        candidates = prev_drawn.select(~np.isin(prev_drawn.tracked_ids, list(ids.values())))
        for i, j in match_boxes(_boxes(drawn, size), candidates, settings.match_iou):
            ids[drawn[i].region_id] = int(candidates.tracked_ids[j])
        for r in drawn:
            if r.region_id not in ids:
                ids[r.region_id] = next_id
                next_id += 1
                labels.drawn += 1
        prev_drawn = _boxes(drawn, size).with_track_ids([ids[r.region_id] for r in drawn])
        _check_unique(ids, regions, second, where)
        for r in regions:
            pid = ids[r.region_id]
            acts, source = r.actions, _source(machine, second, pid, r.actions)
            if not acts and settings.propagate and pid in last_actions:
                acts, source = last_actions[pid], "propagated"
            if not acts:
                labels.unlabelled.append(r.where)
                continue
            violations = actions.exclusive_violations(acts)
            if violations:
                raise FormatError("; ".join(violations), r.where)
            last_actions[pid] = acts
            labels.boxes.append(
                LabelledBox(second, r.normalised(frames.width, frames.height), pid, acts, source, r.region_id)
            )
    return labels


def _boxes(regions: list[ParsedRegion], size: tuple[int, int]) -> Boxes:
    """The regions' pixel boxes; an annotator's box counts as certain (score 1)."""
    xyxy = np.array([r.box for r in regions], dtype=np.float64).reshape(-1, 4)
    return Boxes(xyxy, np.ones(len(regions)), "pixels", size)


def _typed_ids(regions: list[ParsedRegion]) -> list[int]:
    return [int(r.person) for r in regions if ascii_int(r.person)]


def _person_id(region: ParsedRegion) -> int:
    assert region.person is not None
    if not ascii_int(region.person):
        raise FormatError(
            f"person {region.person!r} is not a track id (a number of up to 9 digits 0-9); "
            "leave it empty for a new person",
            region.where,
        )
    return int(region.person)


def _check_unique(ids: dict[str, int], regions: list[ParsedRegion], second: int, where: str) -> None:
    seen: dict[int, str] = {}
    for r in regions:
        pid = ids.get(r.region_id)
        if pid is None:
            continue
        if pid in seen:
            raise FormatError(
                f"second {second}: person {pid} is on two boxes (regions {seen[pid]} and {r.region_id}); "
                "one person, one box",
                where,
            )
        seen[pid] = r.region_id


def _source(
    machine: Mapping[tuple[int, int], tuple[int, ...]] | None, second: int, pid: int, acts: tuple[int, ...]
) -> Source:
    if machine is not None and acts and tuple(sorted(machine.get((second, pid), ()))) == acts:
        return "machine"
    return "human"
