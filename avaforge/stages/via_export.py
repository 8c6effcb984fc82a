"""VIA export: one VIA 3 project per clip, keyframe images beside it, and a zip to hand to an annotator."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from avaforge.formats.actions import ActionList
from avaforge.formats.timeline import keyframe_index, rawframe_name
from avaforge.formats.via3 import ViaBox, ViaKeyframe, build_project, dumps_project, keyframe_image_name
from avaforge.fsutil import atomic_write_bytes, link_or_copy
from avaforge.settings import ViaSettings
from avaforge.stages.frames import FramesInfo
from avaforge.stages.track import Tracks

HOW_TO_LABEL = """How to label {clip_id}
==============================

This folder holds one VIA 3 project ({project}) and the {n} keyframe images it shows, one per labelled
second of the clip. Each person the detector found already has a box; the box label is the person's
track id (the "person" attribute). Your job is to tick what each person is doing.

1. Open VIA 3's image annotator (via_image_annotator.html, VIA 3.x) in a web browser.
2. Add the images: use the "add files" button and select every .jpg file in this folder.
3. Open the project: Project -> Open (load) and choose {project}.
4. For every image and every box, tick all actions that apply in the action groups ({groups}).
   Boxes start with nothing ticked: an unticked box means "no action" and is reported, not guessed.
5. Fix boxes when needed:
   - move or resize a box that is off;
   - delete a box that is not a person;
   - draw a box for a person the detector missed and leave its "person" field EMPTY: avaforge gives it a
     new id and carries that id to the next seconds by overlap;
   - if one person carries two different track ids over time, type the right id into "person".
   Only rectangles are accepted.
6. Save the project (Project -> Save) and hand back the saved .json file. Its name does not matter;
   avaforge recognises the clip from the project name ({clip_id}).

Then: avaforge import WORKDIR finished.json
"""


@dataclass(frozen=True)
class ViaExport:
    project: Path
    folder: Path
    archive: Path


def export_paths(out_dir: Path, clip_id: str, project_suffix: str = ".via3.json") -> ViaExport:
    """Where ``export_via`` writes a clip's project, folder and zip."""
    folder = out_dir / clip_id
    return ViaExport(folder / f"{clip_id}{project_suffix}", folder, out_dir / f"{clip_id}.zip")


def keyframes_for_via(
    frames: FramesInfo,
    tracks: Tracks,
    settings: ViaSettings,
    prefill: Mapping[tuple[int, int], tuple[int, ...]] | None = None,
) -> list[ViaKeyframe]:
    """Labelled seconds with their tracked boxes above ``settings.min_score`` (and optional pre-ticks)."""
    out = []
    for t in frames.labelled_seconds:
        people = tracks.at_second(t).with_min_score(settings.min_score)
        boxes = []
        for tid, (x1, y1, x2, y2) in zip(people.tracked_ids, people.xyxy, strict=True):
            ticks = tuple(prefill.get((t, int(tid)), ())) if prefill else ()
            boxes.append(ViaBox(x1, y1, x2, y2, track_id=int(tid), actions=ticks))
        out.append(ViaKeyframe(t, tuple(boxes)))
    return out


def export_via(
    frames: FramesInfo,
    keyframes: list[ViaKeyframe],
    actions: ActionList,
    frame_dir: Path,
    out_dir: Path,
    *,
    project_suffix: str = ".via3.json",
) -> ViaExport:
    """Write ``out_dir/<clip>/`` (project, images, HOW_TO_LABEL.txt) and ``out_dir/<clip>.zip``."""
    clip_id = frames.clip_id
    paths = export_paths(out_dir, clip_id, project_suffix)
    folder, project = paths.folder, paths.project
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(project, dumps_project(build_project(clip_id, keyframes, actions)))
    names = []
    for kf in keyframes:
        name = keyframe_image_name(clip_id, kf.second)
        target = folder / name
        if not target.exists():
            link_or_copy(frame_dir / rawframe_name(keyframe_index(kf.second)), target)
        names.append(name)
    guide = HOW_TO_LABEL.format(
        clip_id=clip_id, project=project.name, n=len(names), groups=", ".join(g.name for g in actions.groups)
    )
    atomic_write_bytes(folder / "HOW_TO_LABEL.txt", guide.encode())
    _write_zip(paths.archive, folder, [project.name, "HOW_TO_LABEL.txt", *names])
    return paths


def _write_zip(archive: Path, folder: Path, names: list[str]) -> None:
    """Deterministic zip: fixed timestamps and order, JPEGs stored (already compressed)."""
    tmp = archive.with_name(f".{archive.name}.partial")
    with zipfile.ZipFile(tmp, "w") as zf:
        for name in sorted(names):
            info = zipfile.ZipInfo(f"{folder.name}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED if name.endswith(".jpg") else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, (folder / name).read_bytes())
    tmp.replace(archive)
