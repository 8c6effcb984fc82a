"""Dataset checks, in the order mmaction2 meets the files: label map, csv, excludes, proposals, rawframes."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from avaforge.dataset_layout import SPLITS, DatasetLayout
from avaforge.formats.actions import ActionList
from avaforge.formats.ava_csv import AvaRow, check_row, parse_excluded, parse_rows, proposal_key
from avaforge.formats.errors import FormatError, Severity, read_text
from avaforge.formats.pbtxt import parse_pbtxt
from avaforge.formats.proposals import check_array, loads_raw, parse_key
from avaforge.formats.timeline import sample_window
from avaforge.provenance import PROVENANCE_FILE, provenance_actions, read_provenance
from avaforge.validation.config import check_config
from avaforge.validation.report import ValidationReport, WindowSettings


def validate_dataset(
    path: str | Path,
    *,
    config: str | Path | None = None,
    window: WindowSettings | None = None,
    actions: ActionList | None = None,
) -> ValidationReport:
    """``actions``: the action list with its groups; by default the one provenance.json records (the pbtxt
    has no groups), and exclusive groups are checked when it has any."""
    layout = DatasetLayout.find(path)
    report = ValidationReport(dataset=str(path))
    if not layout.root.is_dir():
        report.add(Severity.ERROR, "no-dataset", "not a directory", str(path))
        return report
    action_ids = _check_label_map(layout, report)
    actions = _group_actions(layout, actions, report)
    if config is not None:
        window = check_config(config, layout, action_ids, report)
    window = window or WindowSettings()
    videos_by_split: dict[str, set[str]] = {}
    report.summary["splits"] = {}
    for split in SPLITS:
        rows = _check_csv(layout, split, action_ids, report)
        if rows is None:
            continue
        if actions is not None:
            _check_exclusive(rows, actions, str(layout.csv(split)), report)
        excluded = _check_excluded(layout, split, report)
        labelled = sorted(
            {(r.video_id, r.timestamp) for r in rows if (r.video_id, r.timestamp) not in excluded}
        )
        _check_proposals(layout, split, rows, labelled, report)
        _check_rawframes(layout, labelled, window, report)
        videos_by_split[split] = {r.video_id for r in rows}
        report.summary["splits"][split] = {
            "rows": len(rows),
            "boxes": len({(r.video_id, r.timestamp, r.box) for r in rows}),
            "keyframes": len(labelled),
            "videos": len(videos_by_split[split]),
            "actions": dict(sorted(Counter(r.action_id for r in rows).items())),
        }
    if "train" in videos_by_split and "val" in videos_by_split:
        for vid in sorted(videos_by_split["train"] & videos_by_split["val"]):
            report.add(
                Severity.ERROR,
                "split-leak",
                f"video {vid!r} is in both train and val (split by video; val must be unseen)",
                str(layout.annotations),
            )
    return report


def _check_label_map(layout: DatasetLayout, report: ValidationReport) -> set[int]:
    path = layout.action_list
    try:
        text = read_text(path)
    except FormatError as exc:
        report.add(Severity.ERROR, "pbtxt-missing", exc.message, str(path))
        return set()
    items, problems = parse_pbtxt(text, str(path))
    report.problems.extend(problems)
    ids = {i for i, _ in items}
    if ids and ids != set(range(1, len(ids) + 1)):
        report.add(Severity.WARNING, "pbtxt-ids", f"ids {sorted(ids)} are not 1..K", str(path))
    report.summary["actions"] = {i: n for i, n in sorted(items)}
    return ids


def _group_actions(
    layout: DatasetLayout, actions: ActionList | None, report: ValidationReport
) -> ActionList | None:
    """The action list whose exclusive groups apply, if it matches the pbtxt (else a warning, no check)."""
    where = str(layout.annotations / PROVENANCE_FILE)
    if actions is None:
        try:
            actions = provenance_actions(read_provenance(layout.annotations), where)
        except FormatError as exc:
            report.add(Severity.WARNING, "provenance-unreadable", exc.message, exc.where or where)
            return None
    if actions is None or not actions.exclusive_groups:
        return None
    pbtxt = report.summary.get("actions", {})
    if pbtxt and dict(actions.pbtxt_items()) != pbtxt:
        report.add(
            Severity.WARNING,
            "groups-mismatch",
            "the action list with the groups does not match the pbtxt; exclusive groups not checked",
            where,
        )
        return None
    return actions


def _check_exclusive(rows: list[AvaRow], actions: ActionList, where: str, report: ValidationReport) -> None:
    """Exactly one action of each exclusive group per labelled box (a person at a keyframe)."""
    per_box: dict[tuple[str, int, int], set[int]] = defaultdict(set)
    for r in rows:
        per_box[(r.video_id, r.timestamp, r.person_id)].add(r.action_id)
    for (vid, ts, pid), ids in sorted(per_box.items()):
        for message in actions.exclusive_violations(ids):
            report.add(Severity.ERROR, "exclusive-group", message, f"{where} ({vid},{ts:04d} person {pid})")


def _check_csv(
    layout: DatasetLayout, split: str, action_ids: set[int], report: ValidationReport
) -> list[AvaRow] | None:
    path = layout.csv(split)
    try:
        text = read_text(path)
    except FormatError as exc:
        report.add(Severity.ERROR, "csv-missing", f"{split} annotations: {exc.message}", str(path))
        return None
    rows, problems = parse_rows(text, str(path))
    report.problems.extend(problems)
    if not rows and not problems:
        report.add(Severity.ERROR, "csv-empty", f"no {split} annotations", str(path))
    lines = [ln for ln in text.splitlines() if ln.strip()]
    imprecise = sum(
        1 for ln in lines if any(len(f.split(".")[-1]) > 3 and "." in f for f in ln.split(",")[2:6])
    )
    if imprecise:
        report.add(
            Severity.WARNING,
            "box-precision",
            f"{imprecise} rows have boxes with more than 3 decimals (AVA writes 3)",
            str(path),
        )
    for row in rows:
        where = f"{path} ({row.video_id},{row.timestamp:04d} person {row.person_id})"
        report.problems.extend(check_row(row, where))
        if action_ids and row.action_id not in action_ids:
            report.add(
                Severity.ERROR, "unknown-action", f"action id {row.action_id} is not in the pbtxt", where
            )
    _check_person_ids(rows, str(path), report)
    return rows


def _check_person_ids(rows: list[AvaRow], where: str, report: ValidationReport) -> None:
    boxes_by_id: dict[tuple[str, int, int], set[tuple[float, ...]]] = defaultdict(set)
    ids_by_box: dict[tuple[str, int, tuple[float, ...]], set[int]] = defaultdict(set)
    seen: Counter[AvaRow] = Counter(rows)
    for r in rows:
        boxes_by_id[(r.video_id, r.timestamp, r.person_id)].add(r.box)
        ids_by_box[(r.video_id, r.timestamp, r.box)].add(r.person_id)
    for (vid, ts, pid), boxes in sorted(boxes_by_id.items()):
        if len(boxes) > 1:
            report.add(
                Severity.ERROR,
                "duplicate-person-id",
                f"person id {pid} has {len(boxes)} different boxes at second {ts}",
                f"{where} ({vid},{ts:04d})",
            )
    for (vid, ts, box), pids in sorted(ids_by_box.items()):
        if len(pids) > 1:
            report.add(
                Severity.ERROR,
                "box-several-ids",
                f"box {box} carries person ids {sorted(pids)}",
                f"{where} ({vid},{ts:04d})",
            )
    for row, n in seen.items():
        if n > 1:
            report.add(Severity.WARNING, "duplicate-row", f"row repeated {n} times", f"{where} ({row.key})")


def _check_excluded(layout: DatasetLayout, split: str, report: ValidationReport) -> set[tuple[str, int]]:
    path = layout.excluded(split)
    try:
        text = read_text(path)
    except FormatError as exc:
        report.add(Severity.WARNING, "excluded-missing", f"{exc.message} (configs name this file)", str(path))
        return set()
    entries, problems = parse_excluded(text, str(path))
    report.problems.extend(problems)
    return set(entries)


def _check_proposals(
    layout: DatasetLayout,
    split: str,
    rows: list[AvaRow],
    labelled: list[tuple[str, int]],
    report: ValidationReport,
) -> None:
    path = layout.proposals(split)
    try:
        raw = loads_raw(path.read_bytes(), str(path))
    except FileNotFoundError:
        report.add(
            Severity.ERROR,
            "proposals-missing",
            "no dense proposals: mmaction2 then uses the whole frame as the only proposal",
            str(path),
        )
        return
    except FormatError as exc:
        report.add(Severity.ERROR, "proposals-unreadable", exc.message, str(path))
        return
    broken: set[str] = set()
    for key, value in raw.items():
        try:
            parse_key(key)
        except FormatError as exc:
            report.add(Severity.ERROR, "proposal-key", exc.message, str(path))
            continue
        for p in check_array(key, value):
            broken.add(key)
            report.add(p.severity, p.code, p.message, f"{path}: {p.where}")
    gt_by_key: dict[str, set[tuple[float, ...]]] = defaultdict(set)
    for r in rows:
        gt_by_key[r.key].add(r.box)
    uncovered = total = 0
    for vid, ts in labelled:
        key = proposal_key(vid, ts)
        value = raw.get(key)
        if value is None:
            report.add(
                Severity.ERROR,
                "proposal-missing-key",
                f"labelled keyframe {key!r} has no proposals (mmaction2 silently uses the whole frame)",
                str(path),
            )
            continue
        if key in broken:
            continue  # already reported above
        if value.shape[0] == 0:
            report.add(
                Severity.ERROR,
                "proposal-empty-labelled",
                f"labelled keyframe {key!r} has (0, 5) proposals: mmaction2 fails on max() of no scores",
                str(path),
            )
            continue
        for box in gt_by_key[key]:
            total += 1
            if _best_iou(np.asarray(box), value[:, :4]) < 0.5:
                uncovered += 1
    if uncovered:
        report.add(
            Severity.WARNING,
            "gt-not-proposed",
            f"{uncovered} of {total} {split} ground-truth boxes have no proposal with IoU >= 0.5 "
            "(in evaluation they can never be detected)",
            str(path),
        )


def _best_iou(box: np.ndarray, others: np.ndarray) -> float:
    ix1 = np.maximum(box[0], others[:, 0])
    iy1 = np.maximum(box[1], others[:, 1])
    ix2 = np.minimum(box[2], others[:, 2])
    iy2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return float((inter / np.maximum(area + areas - inter, 1e-12)).max())


def _check_rawframes(
    layout: DatasetLayout, labelled: list[tuple[str, int]], window: WindowSettings, report: ValidationReport
) -> None:
    listing: dict[str, set[str] | None] = {}
    for vid, ts in labelled:
        if vid not in listing:
            d = layout.frame_dir(vid)
            listing[vid] = {p.name for p in d.iterdir()} if d.is_dir() else None
            if listing[vid] is None:
                report.add(
                    Severity.ERROR, "rawframes-missing", f"no rawframes folder for video {vid!r}", str(d)
                )
        names = listing[vid]
        if names is None:
            continue
        frames = sample_window(
            ts,
            window.shot_frames,
            window.clip_len,
            window.frame_interval,
            window.start_index,
            window.timestamp_start,
        )
        missing = sorted({f for f in frames if f"img_{f:05d}.jpg" not in names})
        if missing:
            report.add(
                Severity.ERROR,
                "rawframes-window",
                f"second {ts}: {len(missing)} frames of the sampling window {frames[0]}..{frames[-1]} "
                f"are missing (first img_{missing[0]:05d}.jpg)",
                str(layout.frame_dir(vid)),
            )
