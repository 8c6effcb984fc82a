"""Data-parallel training: torchrun starts N copies of this module's ``main`` and mmengine's Runner runs
DDP in them (``launcher='pytorch'``; gloo on CPU, nccl on GPU).

The run directory is shared by the processes: the launcher writes ``config.py`` and ``launch.json`` (the
Runner overrides) before torchrun starts, and mmengine writes checkpoints, logs and ``last_checkpoint`` from
rank 0 only. The config's ``train_dataloader.batch_size`` is the per-process batch (global batch / N, see
``config.build_config``), so a run's global batch does not depend on N. Under a Kubeflow PyTorchJob the
operator sets the torchrun environment instead (``deploy/k8s/components/training``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

LAUNCH_FILE = "launch.json"


def world_size(env: dict[str, str] | os._Environ[str] = os.environ) -> int:
    return int(env.get("WORLD_SIZE", "1"))


def backend() -> str:
    import torch

    return "nccl" if torch.cuda.is_available() else "gloo"


def _die_with_parent() -> None:
    """torchrun and its workers end with the process that started them (a killed trainer leaves no run)."""
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def torchrun_command(run_dir: Path, nproc: int | None) -> list[str]:
    """``nproc`` processes on this machine with a free local rendezvous port (``--standalone``); with
    ``nproc=None`` torchrun takes nodes, processes and rendezvous from its ``PET_*`` environment (what the
    Kubeflow operator sets in a PyTorchJob's pods)."""
    where = ["--standalone", f"--nproc-per-node={nproc}"] if nproc else []
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *where,
        "-m",
        "avaforge.trainer.distributed",
        str(run_dir),
    ]


def launch(run_dir: Path, nproc: int | None, overrides: dict[str, Any]) -> None:
    """Train with ``nproc`` processes on this machine (None: as ``PET_*`` says); returns when all have
    finished."""
    (run_dir / LAUNCH_FILE).write_text(json.dumps(overrides))
    env = dict(os.environ)
    # the launcher's own modules first on the workers' path too (a worktree over an installed copy)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_repo_root()), env.get("PYTHONPATH")) if p)
    done = subprocess.run(torchrun_command(run_dir, nproc), env=env, preexec_fn=_die_with_parent)
    if done.returncode != 0:
        raise RuntimeError(f"distributed training ({nproc} processes) exited with {done.returncode}")


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def wrapper_cfg() -> dict[str, Any]:
    """mmengine gives DDP ``device_ids=[LOCAL_RANK]``, which DDP refuses for a module on the CPU."""
    import torch

    cfg: dict[str, Any] = dict(type="MMDistributedDataParallel", broadcast_buffers=False)
    if not torch.cuda.is_available():
        cfg["device_ids"] = None
    return cfg


def init_process_group() -> None:
    """The process group from torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR/PORT). Done here, not
    by mmengine, because mmengine's ``init_dist`` calls ``torch.cuda.set_device`` even for gloo on CPU."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend())


def run_rank(run_dir: Path, overrides: dict[str, Any]) -> None:
    """In one torchrun process: this rank's part of the training."""
    from avaforge.trainer.train import _in_dir, _load_runner, mmengine_checkpoint_globals

    init_process_group()
    config = run_dir / "config.py"
    with _in_dir(run_dir), mmengine_checkpoint_globals():
        runner = _load_runner(config, launcher="pytorch", model_wrapper_cfg=wrapper_cfg(), **overrides)
        runner.train()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: torchrun ... -m avaforge.trainer.distributed RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(args[0]).resolve()
    _die_with_parent()  # torchrun's agent killed: this rank goes too
    overrides = json.loads((run_dir / LAUNCH_FILE).read_text())
    try:
        run_rank(run_dir, overrides)
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
