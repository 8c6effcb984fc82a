"""Run ffmpeg and ffprobe with a time limit and a cancel check, turning a failure into an error that names the
input file.

Every run has a limit scaled by the media it processes: ``AVAFORGE_FFMPEG_TIMEOUT_BASE_S`` (60) plus
``AVAFORGE_FFMPEG_TIMEOUT_PER_S`` (20) seconds per second of media, so a hung read or a pathological input
ends the run with a clear error instead of holding a worker (and its queue item) forever. The limit is far
above a normal run: cutting one second of 1080p with rawframes takes about 1-2 s on 2 CPU cores. While it
waits, the run polls the current item's cancel token (``avaforge.cancel``) and kills ffmpeg when its job is
cancelled.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

import ffmpeg
from ffmpeg._utils import convert_kwargs_to_cmd_line_args

from avaforge import cancel
from avaforge.formats.errors import FormatError

POLL_S = 0.2  # how soon a cancel or the deadline is noticed


class FfmpegTimeout(RuntimeError):
    """ffmpeg/ffprobe ran past its limit (retried: a loaded machine or a stalled read can be the cause)."""


def timeout_for(media_s: float) -> float:
    """The time limit of a run over ``media_s`` seconds of media (0: headers only, e.g. a probe)."""
    base = float(os.environ.get("AVAFORGE_FFMPEG_TIMEOUT_BASE_S", "60"))
    per_s = float(os.environ.get("AVAFORGE_FFMPEG_TIMEOUT_PER_S", "20"))
    return base + per_s * max(0.0, media_s)


def execute(args: list[str], where: str, timeout_s: float) -> tuple[int, bytes, bytes]:
    """Run ``args`` to the end (exit code, stdout, stderr); killed past ``timeout_s`` (``FfmpegTimeout``) or
    when the current item is cancelled (``cancel.Cancelled``)."""
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=max(0.01, min(POLL_S, deadline - time.monotonic())))
                return proc.returncode, out, err
            except subprocess.TimeoutExpired:
                if cancel.requested():
                    raise cancel.Cancelled(f"{args[0]} stopped, its job was cancelled ({where})") from None
                if time.monotonic() >= deadline:
                    raise FfmpegTimeout(
                        f"{where}: {args[0]} did not finish within {timeout_s:.0f} s and was stopped (limit: "
                        "AVAFORGE_FFMPEG_TIMEOUT_BASE_S + AVAFORGE_FFMPEG_TIMEOUT_PER_S x media seconds)"
                    ) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def run(stream: ffmpeg.nodes.OutputStream, where: str, media_s: float = 0.0) -> None:
    """Run an ffmpeg-python graph over ``media_s`` seconds of media (its time limit scales with it)."""
    args = stream.global_args("-hide_banner", "-nostdin", "-loglevel", "error").compile(overwrite_output=True)
    code, _, err = execute(args, where, timeout_for(media_s))
    if code != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        raise FormatError(f"ffmpeg failed: {lines[-1] if lines else 'no message'}", where)


def probe(path: str, media_s: float = 0.0, **kwargs: Any) -> dict[str, Any]:
    """``ffmpeg.probe`` with a time limit and the cancel check; raises ``ffmpeg.Error`` like it."""
    args = ["ffprobe", "-show_format", "-show_streams", "-of", "json"]
    args += [*convert_kwargs_to_cmd_line_args(kwargs), path]
    code, out, err = execute(args, path, timeout_for(media_s))
    if code != 0:
        raise ffmpeg.Error("ffprobe", out, err)
    return json.loads(out.decode("utf-8"))


def count_frames(path: str, where: str, media_s: float = 0.0) -> int:
    """Exact number of video frames (packets) in a file we encoded ourselves."""
    try:
        info = probe(path, media_s, count_packets=None, select_streams="v:0")
    except ffmpeg.Error as exc:
        raise FormatError(
            f"cannot count frames: {(exc.stderr or b'').decode(errors='replace')[-200:]}", where
        ) from None
    streams = info.get("streams") or [{}]
    return int(streams[0].get("nb_read_packets", 0))
