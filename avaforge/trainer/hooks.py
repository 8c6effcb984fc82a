"""mmengine hook that reports progress to a file and stops the run when asked (the trainer service's
cancel), registered by the config plugin.

Under DDP every rank takes part: the reported loss is the mean over the ranks (the global batch's loss, not
rank 0's half of it) and the cancel is one decision for all ranks, both from a single all-reduce; only rank 0
writes the file. A rank that stopped alone would leave the others waiting in their next gradient all-reduce.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from mmengine.dist import all_reduce, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


class TrainingCancelled(RuntimeError):
    pass


@HOOKS.register_module()
class AvaforgeProgressHook(Hook):
    priority = "VERY_LOW"

    def __init__(self, progress_file: str, cancel_file: str | None = None) -> None:
        self.progress_file = Path(progress_file)
        self.cancel_file = Path(cancel_file) if cancel_file else None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:  # type: ignore[no-untyped-def]
        loss = float("nan")
        if outputs and "loss" in outputs:
            value = outputs["loss"]  # a tensor still in the autograd graph, or a float
            loss = float(value.detach() if hasattr(value, "detach") else value)
        cancel = bool(self.cancel_file and self.cancel_file.exists())
        # float64: the mean of the ranks' losses is compared across runs (tests/test_train_ddp.py)
        shared = torch.tensor([loss, float(cancel)], dtype=torch.float64)
        if get_world_size() > 1:
            all_reduce(shared, op="sum")
        loss_mean = float(shared[0]) / get_world_size()
        if get_rank() == 0:  # atomic: the trainer service reads this file while the run writes it
            tmp = self.progress_file.with_name(f".{self.progress_file.name}.partial")
            report = {
                "iter": runner.iter + 1,
                "max_iters": runner.max_iters,
                "loss": loss_mean if loss_mean == loss_mean else None,  # NaN: no loss this iteration
            }
            tmp.write_text(json.dumps(report))
            os.replace(tmp, self.progress_file)
        if shared[1] > 0:
            raise TrainingCancelled(f"cancelled at iteration {runner.iter + 1}")
