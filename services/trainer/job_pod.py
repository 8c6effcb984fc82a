"""One pod of a training PyTorchJob: ``python -m services.trainer.job_pod <job>``.

Every pod: the job's spec and dataset from S3, its last checkpoint from S3 (resume), the same generated config
(per-process batch = global batch / world size), then torchrun with the operator's ``PET_*`` environment.
The Master pod (node rank 0, where mmengine's rank 0 runs) also copies progress and checkpoints to S3 while
the run goes (``job_state.StateSync``) and, at the end, evaluates once and stores the results. Exit status 0
or 1; the operator restarts a failed pod (restartPolicy OnFailure) and it resumes from S3.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from avaforge.archive import pack_tree, unpack_tree
from avaforge.storage import ArtifactRef, S3Store
from services.trainer import job_state


def _int_env(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def prepare(store: S3Store, job: str, work: Path) -> tuple[dict[str, Any], Path, int | None]:
    """Spec, dataset and run directory of ``job`` in ``work``; the checkpoint iteration it resumes from."""
    from avaforge.trainer.config import build_config, write_config

    spec = job_state.read_json(store, job_state.spec_key(job))
    if spec is None:
        raise RuntimeError(f"training job {job} has no spec in S3")
    dataset, run = work / "dataset", work / "run"
    if not dataset.exists():
        unpack_tree(store.get(ArtifactRef(**spec["dataset"])), dataset, f"dataset of {job}")
    resumed = job_state.restore(store, job, run)
    config = run / "config.py"
    if not config.exists():
        world = _int_env("PET_NNODES", 1) * _int_env("PET_NPROC_PER_NODE", 1)
        cfg = build_config(
            dataset,
            spec["preset"],
            run,
            iters=spec["iters"],
            processes=world,
            checkpoint_interval=min(spec["iters"], _int_env("AVAFORGE_TRAIN_CHECKPOINT_EVERY", 500)),
        )
        write_config(cfg, config)
    return spec, run, resumed


def finish(store: S3Store, job: str, run: Path) -> dict[str, Any]:
    """On the Master pod after training: evaluate once, store config, metrics, checkpoint and logs."""
    from avaforge.trainer.train import evaluate, last_checkpoint

    ckpt = last_checkpoint(run)
    if ckpt is None:
        raise RuntimeError(f"training wrote no checkpoint in {run}")
    metrics = {"checkpoint": ckpt.name, "val": evaluate(run / "config.py", ckpt, "val")}
    (run / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        for log in run.glob("*/*.log"):
            (logs / log.parent.name).mkdir(parents=True, exist_ok=True)
            (logs / log.parent.name / log.name).write_bytes(log.read_bytes())
        packed = pack_tree(logs)
    prefix = "train"
    return {
        "config": store.put(prefix, (run / "config.py").read_bytes(), ".py").to_dict(),
        "metrics": store.put(prefix, (run / "metrics.json").read_bytes(), ".json").to_dict(),
        "checkpoint": store.put_file(prefix, ckpt, ".pth").to_dict(),
        "logs": store.put(prefix, packed, ".tar").to_dict(),
    }


def run_pod(store: S3Store, job: str, work: Path) -> None:
    from avaforge.trainer import distributed
    from avaforge.trainer.train import runner_overrides

    spec, run, resumed = prepare(store, job, work)
    progress = run / "progress.json"
    overrides = runner_overrides(run / "config.py", spec["iters"], resumed is not None, progress)
    if _int_env("PET_NODE_RANK", 0) != 0:
        distributed.launch(run, None, overrides)
        return
    sync = job_state.StateSync(store, job, run, progress)
    sync.sync(resumed_from=resumed)
    stop = threading.Event()

    every = float(os.environ.get("AVAFORGE_TRAIN_SYNC_S") or 5.0)  # seconds between copies to S3

    def loop() -> None:
        while not stop.wait(every):
            sync.sync()

    thread = threading.Thread(target=loop, name="state-sync", daemon=True)
    thread.start()
    try:
        distributed.launch(run, None, overrides)
    finally:
        stop.set()
        thread.join()
    sync.sync()
    sync.sync(result=finish(store, job, run))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m services.trainer.job_pod JOB_ID", file=sys.stderr)
        return 2
    job = args[0]
    from services.trainer.pytorchjob import job_name

    job_name(job)  # a trainer job id, or ValueError
    store = S3Store.from_env()
    work = Path(os.environ.get("AVAFORGE_CACHE_DIR") or tempfile.gettempdir()) / "train-jobs" / job
    work.mkdir(parents=True, exist_ok=True)
    try:
        run_pod(store, job, work)
    except Exception as exc:  # one line for the pod's log; the operator restarts the pod
        print(f"training job {job} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
