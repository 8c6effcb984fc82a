"""Train and evaluate through mmaction2's Runner (its real training loop and AVA frame-mAP@0.5).

The run directory holds everything: ``config.py`` (the generated, plain mmaction2 config that is what runs),
checkpoints, logs and ``metrics.json``. The Runner works inside the run directory, so nothing it writes lands
elsewhere. ``resume`` continues from the last checkpoint there.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avaforge.formats.errors import FormatError
from avaforge.trainer.config import build_config, write_config


@contextlib.contextmanager
def _in_dir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextlib.contextmanager
def mmengine_checkpoint_globals() -> Iterator[None]:
    """torch >= 2.6 loads with ``weights_only=True``; mmengine checkpoints carry their message hub
    (HistoryBuffer, numpy arrays and scalars, and builtins fetched through ``getattr``). Allow exactly those
    while loading, instead of switching the weights-only check off."""
    import builtins

    import numpy as np
    import torch
    from mmengine.logging.history_buffer import HistoryBuffer

    allowed: list[Any] = [
        HistoryBuffer,
        np.dtype,
        np.ndarray,
        np.core.multiarray._reconstruct,
        np.core.multiarray.scalar,
        getattr,
        builtins.min,
        builtins.max,
        *{type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)},
    ]
    with torch.serialization.safe_globals(allowed):
        yield


@dataclass
class TrainResult:
    run_dir: Path
    config: Path
    checkpoint: Path
    metrics: dict[str, Any]


def _load_runner(config: Path, **overrides: Any):  # type: ignore[no-untyped-def]
    from mmengine.config import Config
    from mmengine.runner import Runner

    cfg = Config.fromfile(str(config))  # runs custom_imports: the plugin installs the mmcv-lite adapter
    for key, value in overrides.items():
        cfg[key] = value
    return Runner.from_cfg(cfg)


def last_checkpoint(run_dir: Path) -> Path | None:
    marker = run_dir / "last_checkpoint"
    if marker.exists():
        path = Path(marker.read_text().strip())
        return path if path.is_absolute() else run_dir / path
    return None


def runner_overrides(
    config: Path,
    iters: int,
    resume: bool,
    progress_file: str | Path | None = None,
    cancel_file: str | Path | None = None,
) -> dict[str, Any]:
    """What a run changes in its config: resume from the last checkpoint (to ``iters`` in total), and the
    progress/cancel hook. Plain values only: the DDP launcher hands them to its processes as JSON."""
    from mmengine.config import Config

    overrides: dict[str, Any] = {"resume": resume and last_checkpoint(config.parent) is not None}
    if progress_file:
        hook = dict(type="AvaforgeProgressHook", progress_file=str(progress_file))
        if cancel_file:
            hook["cancel_file"] = str(cancel_file)
        overrides["custom_hooks"] = [hook]
    if resume:  # continue to ``iters`` in total
        loop = Config.fromfile(str(config)).train_cfg.to_dict()
        loop["max_iters"] = iters
        overrides["train_cfg"] = loop
    return overrides


def train_config(
    config: Path, nproc: int, overrides: dict[str, Any], cancel_file: str | Path | None = None
) -> None:
    """Run mmengine's training loop of ``config`` (in its run directory) in this process or in ``nproc``
    DDP processes; raises ``TrainingCancelled`` when the run stopped on ``cancel_file``."""
    from mmengine.config import Config

    planned = Config.fromfile(str(config)).get("avaforge", {}).get("processes", 1)
    if planned != nproc:  # the per-process batch in the config was derived for ``planned`` processes
        raise FormatError(f"this run was configured for --nproc {planned}, not {nproc}", str(config))
    if nproc == 1:
        with _in_dir(config.parent), mmengine_checkpoint_globals():
            _load_runner(config, **overrides).train()
        return
    from avaforge.trainer import distributed
    from avaforge.trainer.hooks import TrainingCancelled

    try:
        distributed.launch(config.parent, nproc, overrides)
    except RuntimeError:
        if cancel_file and Path(cancel_file).exists():  # the ranks stopped together on the cancel
            raise TrainingCancelled("cancelled") from None
        raise


def evaluate(config: Path, checkpoint: Path, split: str = "val") -> dict[str, Any]:
    """Frame-mAP@0.5 of ``checkpoint`` on a split (per class), with mmaction2's test loop."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(config))
    run_dir = Path(cfg.work_dir)
    loader = cfg.test_dataloader
    evaluator = cfg.test_evaluator
    if split != "val":
        for key in ("ann_file", "exclude_file", "proposal_file"):
            loader.dataset[key] = (
                loader.dataset[key].replace("/val", f"/{split}").replace("_val", f"_{split}")
            )
        evaluator.ann_file = loader.dataset.ann_file
        evaluator.exclude_file = loader.dataset.exclude_file
    evaluator.prefix = split
    with _in_dir(run_dir), mmengine_checkpoint_globals():
        # launcher 'none': after a DDP run the Runner has dumped its config with launcher='pytorch'
        runner = _load_runner(
            config,
            test_dataloader=loader,
            test_evaluator=evaluator,
            load_from=str(checkpoint),
            resume=False,
            launcher="none",
        )
        runner.test()
    return json.loads((run_dir / f"{split}_last_eval.json").read_text())


def train(
    dataset: str | Path,
    preset: str,
    run_dir: str | Path,
    *,
    iters: int = 2000,
    resume: bool = False,
    eval_train: bool = False,
    progress_file: str | Path | None = None,
    cancel_file: str | Path | None = None,
    nproc: int = 1,
    **config_kwargs: Any,
) -> TrainResult:
    """Train; ``progress_file`` gets the iteration as it goes; the run stops once ``cancel_file`` exists.
    ``nproc`` > 1 trains with that many DDP processes (``distributed.launch``); the batch size stays the
    global batch. Evaluation and ``metrics.json`` happen once, here, after training."""
    run = Path(run_dir).resolve()
    run.mkdir(parents=True, exist_ok=True)
    config = run / "config.py"
    if not (resume and config.exists()):
        cfg = build_config(dataset, preset, run, iters=iters, processes=nproc, **config_kwargs)
        write_config(cfg, config)
    overrides = runner_overrides(config, iters, resume, progress_file, cancel_file)
    train_config(config, nproc, overrides, cancel_file)
    ckpt = last_checkpoint(run)
    if ckpt is None:
        raise RuntimeError(f"training wrote no checkpoint in {run}")
    metrics: dict[str, Any] = {
        "preset": preset,
        "iters": iters,
        "checkpoint": str(ckpt),
        "val": evaluate(config, ckpt, "val"),
    }
    if eval_train:
        metrics["train"] = evaluate(config, ckpt, "train")
    (run / "metrics.json").write_text(json.dumps(metrics, indent=1, default=_json_float))
    return TrainResult(run, config, ckpt, metrics)


def _json_float(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)
