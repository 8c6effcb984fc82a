"""mmengine hook that reports progress to a file and stops the run when asked (the trainer service's
cancel), registered by the config plugin."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


class TrainingCancelled(RuntimeError):
    pass


@HOOKS.register_module()
class AvaforgeProgressHook(Hook):
    priority = "VERY_LOW"

    def __init__(self, progress_file: str, cancel_file: str) -> None:
        self.progress_file = Path(progress_file)
        self.cancel_file = Path(cancel_file)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:  # type: ignore[no-untyped-def]
        loss = None
        if outputs and "loss" in outputs:
            value = outputs["loss"]  # a tensor still in the autograd graph, or a float
            loss = float(value.detach() if hasattr(value, "detach") else value)
        # atomic: the trainer service reads this file while the run writes it
        tmp = self.progress_file.with_name(f".{self.progress_file.name}.partial")
        tmp.write_text(json.dumps({"iter": runner.iter + 1, "max_iters": runner.max_iters, "loss": loss}))
        os.replace(tmp, self.progress_file)
        if self.cancel_file.exists():
            raise TrainingCancelled(f"cancelled at iteration {runner.iter + 1}")
