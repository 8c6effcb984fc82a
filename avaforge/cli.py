"""``avaforge`` command line: argument parsing and printing over the runner; no stage logic lives here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from avaforge.formats.errors import FormatError


@contextmanager
def _tqdm_bar(desc: str, total: int) -> Iterator[Callable[[int], None]]:
    from tqdm import tqdm

    with tqdm(
        total=total,
        desc=desc,
        unit="frame",
        leave=False,
        file=sys.stderr,
        disable=None if sys.stderr.isatty() else True,
    ) as bar:
        yield bar.update


def _settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from avaforge.settings import PipelineSettings

    base = PipelineSettings.load(args.settings).to_dict() if args.settings else PipelineSettings().to_dict()
    if args.plan:
        base["cut"]["plan"]["mode"] = args.plan
    if args.window is not None:
        base["cut"]["plan"]["window_s"] = args.window
    if args.backend:
        base["detect"]["backend"] = args.backend
    if args.tracking_fps is not None:
        base["detect"]["tracking_fps"] = args.tracking_fps
    return PipelineSettings.from_dict(base)


def _cmd_prepare(args: argparse.Namespace) -> int:
    from avaforge.formats.actions import ActionList
    from avaforge.runner import prepare

    result = prepare(args.videos, ActionList.load(args.actions), args.out, _settings(args), bar=_tqdm_bar)
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for line in result.recall_risk:
        print(f"recall risk: {line}")
    reused = f" ({len(result.reused)} finished stages reused)" if result.reused else ""
    print(f"prepared {len(result.clips)} clips in {result.workdir}{reused}")
    for archive in result.archives:
        print(f"  VIA project for an annotator: {archive}")
    return 0


def _cmd_autolabel(args: argparse.Namespace) -> int:
    from avaforge.runner import autolabel_workdir

    for path in autolabel_workdir(args.workdir):
        print(f"autolabelled (machine labels): {path}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from avaforge.runner import import_finished
    from avaforge.stages.via_import import ClipLabels

    for path in import_finished(args.workdir, args.files, propagate=args.propagate):
        labels = ClipLabels.load(path)
        print(
            f"{labels.clip_id}: {len(labels.boxes)} labelled boxes, {labels.drawn} drawn by the annotator"
            f" -> {path}"
        )
        for where in labels.unlabelled:
            print(f"  no action ticked (no rows): {where}", file=sys.stderr)
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from avaforge.runner import build

    result = build(args.workdir, args.out)
    print(result.report.to_text())
    print(f"dataset: {result.out}")
    print(f"report:  {result.summary['report']}")
    if result.summary["excluded"]:
        print(f"val keyframes excluded (no person proposal): {result.summary['excluded']}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from avaforge.report import write_report

    print(write_report(args.dataset))
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _cmd_train(args: argparse.Namespace) -> int:
    import json

    from avaforge.trainer.train import train

    try:
        classes = [int(c) for c in args.classes.split(",")] if args.classes else None
    except ValueError:
        raise FormatError(f"--classes {args.classes!r}: give action ids like 1,3", "train") from None
    result = train(
        args.dataset,
        args.preset,
        args.out,
        iters=args.iters,
        resume=args.resume,
        eval_train=args.eval_train,
        batch_size=args.batch_size,
        workers=args.workers,
        lr=args.lr,
        classes=classes,
        pretrained=args.pretrained,
        val_interval=args.val_interval,
        nproc=args.nproc,
    )
    print(json.dumps({k: v for k, v in result.metrics.items() if k in ("val", "train")}, indent=1))
    print(
        f"config:     {result.config}\ncheckpoint: {result.checkpoint}\n"
        f"metrics:    {result.run_dir / 'metrics.json'}"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from avaforge.trainer.demo_video import render_demo

    out = args.out or str(Path(args.video).with_suffix("")) + "_actions.mp4"
    result = render_demo(args.checkpoint, args.video, out, config=args.config, threshold=args.threshold)
    print(f"{result.video} ({result.frames} frames at 30 fps)")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from avaforge.validation import validate_dataset

    report = validate_dataset(args.dataset, config=args.config)
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.ok else 1


def _cmd_annotate(args: argparse.Namespace) -> int:
    import uvicorn

    from avaforge.workbench.app import local_app

    app = local_app(
        args.workdir,
        annotator=args.annotator,
        review=args.review,
        checkpoint=args.checkpoint,
        config=args.config,
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning")
    server = uvicorn.Server(config)
    sock = config.bind_socket()  # bound before printing: --port 0 picks a free port, the URL names it
    # listening before the URL is printed: a client that connects at once waits in the backlog until the app
    # has started, instead of being refused (bind alone does not accept connections)
    sock.listen(config.backlog)
    port = sock.getsockname()[1]
    mode = " (review pass)" if args.review else ""
    print(f"workbench{mode} for {args.workdir}: http://127.0.0.1:{port}/  (Ctrl+C stops it)", flush=True)
    server.run(sockets=[sock])
    return 0


def _cmd_remote(args: argparse.Namespace) -> int:
    """Only ``avaforge remote`` needs grpc and the generated stubs (avaforge/v1): imported here, on use."""
    try:
        from avaforge.cli_remote import cmd
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == "grpc" or exc.name.startswith("avaforge.v1")):
            raise SystemExit(
                f"error: avaforge remote needs grpc and the generated gRPC stubs ({exc}): "
                "`make install` installs both, `make protos` regenerates the stubs"
            ) from None
        raise
    return cmd(args)


def _add_remote_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("remote", help="use a running stack (gateway) instead of this machine")
    p.add_argument("--server", help="gateway HOST:PORT (default: $AVAFORGE_GATEWAY)")
    p.add_argument(
        "--ca", help="CA certificate (PEM) the gateway's TLS certificate is checked against ($AVAFORGE_CA)"
    )
    p.add_argument("--token", help="your bearer token ($AVAFORGE_TOKEN)")
    rs = p.add_subparsers(dest="remote", required=True)
    q = rs.add_parser("submit", help="upload videos and start a job")
    q.add_argument("videos", nargs="+")
    q.add_argument("--actions", required=True)
    q.add_argument("--settings")
    q.add_argument("--watch", action="store_true", help="follow progress until the VIA projects are ready")
    rs.add_parser("jobs", help="list jobs: id, owner, age, state, progress")
    q = rs.add_parser("delete", help="delete a job: its facts and the artifacts no other job shares")
    q.add_argument("job")
    for name, text in (("watch", "follow a job's progress"), ("build", "build the dataset and follow it")):
        rs.add_parser(name, help=text).add_argument("job")
    q = rs.add_parser("via", help="download the job's VIA zips")
    q.add_argument("job")
    q.add_argument("--out", required=True)
    q = rs.add_parser("upload", help="upload finished VIA projects")
    q.add_argument("job")
    q.add_argument("files", nargs="+")
    q.add_argument(
        "--suggestions",
        help="folder of autolabel's <clip>.suggestions.json (default: beside each <clip>.via3.json): labels "
        "equal to them are recorded as machine-made",
    )
    q = rs.add_parser("dataset", help="download the built dataset")
    q.add_argument("job")
    q.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_remote)


class _Parser(argparse.ArgumentParser):
    """A usage error is one line on stderr and exit code 2, like every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="avaforge", description="videos in, an AVA action dataset out")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "prepare", help="cut, extract frames, detect, track, proposals, VIA projects (stages 1-6)"
    )
    p.add_argument("videos", nargs="+")
    p.add_argument("--actions", required=True, help="action list (YAML/JSON: groups of actions)")
    p.add_argument("--out", required=True, help="work folder")
    p.add_argument("--settings", help="YAML settings file (see avaforge/settings.py)")
    p.add_argument("--plan", choices=["whole", "windows", "explicit"], help="clip plan (default whole)")
    p.add_argument("--window", type=float, help="window length in seconds for --plan windows")
    p.add_argument("--backend", choices=["onnx", "ultralytics"], help="detector backend (default onnx)")
    p.add_argument("--tracking-fps", type=float, help="detection/tracking rate (default 10)")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("autolabel", help="pre-tick simple actions from track motion (machine labels)")
    p.add_argument("workdir")
    p.set_defaults(func=_cmd_autolabel)

    p = sub.add_parser("import", help="read finished VIA projects back (stage 7)")
    p.add_argument("workdir")
    p.add_argument("files", nargs="+")
    p.add_argument(
        "--propagate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="copy a person's actions to their next unticked keyframes",
    )
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("build", help="write the AVA dataset, validate it, report (stage 8)")
    p.add_argument("workdir")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("train", help="train + evaluate an mmaction2 model on a dataset (config generated)")
    p.add_argument("dataset")
    p.add_argument("--preset", default="slowfast_r50", choices=["slowfast_r50", "slowonly_r50", "tiny"])
    p.add_argument("--out", required=True, help="run directory (config, checkpoints, logs, metrics.json)")
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument(
        "--val-interval", type=int, help="evaluate and checkpoint every N iterations (default: end)"
    )
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument(
        "--batch-size", type=int, help="the global batch (all processes together; default: the preset's)"
    )
    p.add_argument(
        "--nproc",
        type=_positive_int,
        default=1,
        help="train with N data-parallel processes (torchrun + DDP: gloo on CPU, nccl on GPU); each process "
        "loads batch-size / N keyframes, so the global batch and the optimisation do not change with N",
    )
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--lr", type=float)
    p.add_argument("--classes", help="comma-separated action ids to train on (a subset)")
    p.add_argument("--pretrained", help="backbone weights: a local path or a URL you provide (default: none)")
    p.add_argument("--eval-train", action="store_true", help="also report mAP on the training split")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("demo", help="render a video with person boxes, track ids and predicted actions")
    p.add_argument("checkpoint")
    p.add_argument("video")
    p.add_argument("--out", help="output mp4 (default: VIDEO_actions.mp4)")
    p.add_argument("--config", help="config (default: config.py beside the checkpoint)")
    p.add_argument("--threshold", type=float, default=0.4)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "annotate", help="label the prepared clips in the browser (the workbench, on 127.0.0.1)"
    )
    p.add_argument("workdir")
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--annotator", default="annotator", help="your name, recorded with each revision")
    p.add_argument(
        "--review",
        action="store_true",
        help="act as the reviewer: your saves are the review pass of every clip with no other reviewer",
    )
    p.add_argument(
        "--checkpoint", help="a trained model (avaforge train): its predictions become the suggestions"
    )
    p.add_argument("--config", help="the checkpoint's config (default: config.py beside it)")
    p.set_defaults(func=_cmd_annotate)

    _add_remote_parser(sub)

    p = sub.add_parser("report", help="(re)write the HTML/PNG report of a dataset")
    p.add_argument("dataset")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("validate", help="check an AVA dataset the way mmaction2 will read it")
    p.add_argument("dataset", help="dataset root (with annotations/ and rawframes/)")
    p.add_argument("--config", help="an mmaction2 config to check against the dataset")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_validate)
    return parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Every user error (a bad file, value or request) is one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except FormatError as exc:
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc.filename or ''}: file not found", file=sys.stderr)
        return 2
    except Exception as exc:
        code = getattr(exc, "code", None)  # a gRPC error from `avaforge remote` (grpc is imported on use)
        if code is None or not callable(code) or not hasattr(exc, "details"):
            raise
        kind = code().name
        print(f"error: {kind}: {_one_line(exc.details() or '')}", file=sys.stderr)
        return 2 if kind in _USER_CODES else 1


# gRPC codes that mean the request was wrong (the user's to fix), not that the service failed
_USER_CODES = {
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "FAILED_PRECONDITION",
    "RESOURCE_EXHAUSTED",
    "ALREADY_EXISTS",
    "OUT_OF_RANGE",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
}


if __name__ == "__main__":
    sys.exit(main())
