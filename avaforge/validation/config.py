"""Checks of an mmaction2 config against a dataset: the settings that make training silently wrong."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from avaforge.formats.errors import Severity
from avaforge.formats.timeline import FPS, RAWFRAME_TEMPLATE
from avaforge.validation.report import ValidationReport, WindowSettings

if TYPE_CHECKING:
    from avaforge.dataset_layout import DatasetLayout


def _get(cfg: Any, *keys: str) -> Any:
    for key in keys:
        if cfg is None:
            return None
        cfg = cfg.get(key) if hasattr(cfg, "get") else None
    return cfg


def _ava_dataset(loader: Any) -> Any:
    """The AVADataset dict inside a dataloader, unwrapping RepeatDataset-style wrappers."""
    ds = _get(loader, "dataset")
    while ds is not None and ds.get("type") != "AVADataset" and ds.get("dataset") is not None:
        ds = ds.get("dataset")
    return ds


def check_config(
    path: str | Path, layout: DatasetLayout, action_ids: set[int], report: ValidationReport
) -> WindowSettings:
    from mmengine.config import Config

    where = str(path)
    try:
        cfg = Config.fromfile(str(path))
    except Exception as exc:  # mmengine raises many kinds for a bad config file
        report.add(Severity.ERROR, "config-unreadable", f"{type(exc).__name__}: {exc}", where)
        return WindowSettings()
    k = len(action_ids)
    head = _get(cfg, "model", "roi_head", "bbox_head") or {}
    num_classes = head.get("num_classes")
    datasets = {name: _ava_dataset(cfg.get(f"{name}_dataloader")) for name in ("train", "val", "test")}
    custom = next((d.get("custom_classes") for d in datasets.values() if d and d.get("custom_classes")), None)
    classes = len(custom) if custom else k
    if num_classes is None:
        report.add(
            Severity.ERROR, "config-num-classes", "model.roi_head.bbox_head.num_classes is not set", where
        )
    elif k and num_classes != classes + 1:
        report.add(
            Severity.ERROR,
            "config-num-classes",
            f"bbox_head.num_classes={num_classes}, expected {classes + 1} ({classes} actions + background)",
            where,
        )
    if custom and not set(custom) <= action_ids:
        report.add(
            Severity.ERROR, "config-custom-classes", f"custom_classes {custom} not all in the pbtxt", where
        )
    if custom and sorted(custom) == sorted(action_ids):
        report.add(
            Severity.WARNING, "config-custom-classes", "custom_classes lists every class; drop it", where
        )
    if num_classes is not None and not custom and action_ids and max(action_ids) >= num_classes:
        report.add(
            Severity.ERROR,
            "config-num-classes",
            f"action id {max(action_ids)} >= num_classes {num_classes}: labels would index out of range",
            where,
        )
    topk = head.get("topk", (3, 5))
    topk = (topk,) if isinstance(topk, int) else tuple(topk)
    if classes and any(t > classes for t in topk):
        report.add(
            Severity.ERROR, "config-topk", f"bbox_head.topk={topk} exceeds the {classes} classes", where
        )

    window = WindowSettings()
    for name, ds in datasets.items():
        if ds is None:
            if name != "test":
                report.add(Severity.ERROR, "config-dataset", f"{name}_dataloader has no AVADataset", where)
            continue
        dwhere = f"{where}: {name}_dataloader.dataset"
        ts0 = ds.get("timestamp_start", 900)
        ts1 = ds.get("timestamp_end", 1800)
        start_index = ds.get("start_index", 1)
        fps = ds.get("fps", 30)
        tmpl = ds.get("filename_tmpl", "img_{:05}.jpg")
        if ts0 != 0:
            report.add(
                Severity.ERROR,
                "config-timestamp-start",
                f"timestamp_start={ts0}: our timestamps start at 0 (AVA's default 900 clamps every sample "
                "to frame 1)",
                dwhere,
            )
        if start_index != 1:
            report.add(
                Severity.ERROR,
                "config-start-index",
                f"start_index={start_index}, rawframes start at 1",
                dwhere,
            )
        if fps != FPS:
            report.add(Severity.ERROR, "config-fps", f"fps={fps}, rawframes are at {FPS} fps", dwhere)
        try:
            tmpl_ok = tmpl.format(7) == RAWFRAME_TEMPLATE.format(7)
        except (IndexError, KeyError, ValueError):
            tmpl_ok = False
        if not tmpl_ok:
            report.add(
                Severity.ERROR, "config-filename-tmpl", f"filename_tmpl={tmpl!r} != 'img_{{:05}}.jpg'", dwhere
            )
        if name == "val":
            window = WindowSettings(
                clip_len=_clip_len(cfg, "val_pipeline"),
                frame_interval=_interval(cfg, "val_pipeline"),
                start_index=start_index,
                timestamp_start=ts0,
                shot_frames=(ts1 - ts0) * fps,
            )
        _check_paths(ds, layout, name, dwhere, report)
    return window


def _sampler(cfg: Any, pipeline: str) -> dict[str, Any]:
    for step in cfg.get(pipeline) or []:
        if step.get("type") == "SampleAVAFrames":
            return step
    return {}


def _clip_len(cfg: Any, pipeline: str) -> int:
    return int(_sampler(cfg, pipeline).get("clip_len", 32))


def _interval(cfg: Any, pipeline: str) -> int:
    return int(_sampler(cfg, pipeline).get("frame_interval", 2))


def _check_paths(ds: Any, layout: DatasetLayout, name: str, where: str, report: ValidationReport) -> None:
    split = "train" if name == "train" else "val"
    expected = {
        "ann_file": layout.csv(split),
        "proposal_file": layout.proposals(split),
        "label_file": layout.action_list,
    }
    for key, path in expected.items():
        given = ds.get(key)
        if given is not None and Path(given).resolve() != path.resolve():
            report.add(Severity.WARNING, "config-path", f"{key}={given} is not this dataset's {path}", where)
