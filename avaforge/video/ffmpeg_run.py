"""Run an ffmpeg-python graph, turning a failure into a FormatError that names the input file."""

from __future__ import annotations

import ffmpeg

from avaforge.formats.errors import FormatError


def run(stream: ffmpeg.nodes.OutputStream, where: str) -> None:
    try:
        stream.global_args("-hide_banner", "-nostdin", "-loglevel", "error").run(
            capture_stdout=True, capture_stderr=True, overwrite_output=True
        )
    except ffmpeg.Error as exc:
        lines = (exc.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise FormatError(f"ffmpeg failed: {lines[-1] if lines else 'no message'}", where) from None


def count_frames(path: str, where: str) -> int:
    """Exact number of video frames (packets) in a file we encoded ourselves."""
    try:
        info = ffmpeg.probe(path, count_packets=None, select_streams="v:0")
    except ffmpeg.Error as exc:
        raise FormatError(
            f"cannot count frames: {(exc.stderr or b'').decode(errors='replace')[-200:]}", where
        ) from None
    streams = info.get("streams") or [{}]
    return int(streams[0].get("nb_read_packets", 0))
