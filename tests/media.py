"""Test videos with real people, made with the real ffmpeg from OpenCV's pedestrian clip vtest.avi.

vtest.avi (768x576, 10 fps, msmpeg4, 79.5 s, 3-8 people walking across a square) comes from Debian's
opencv-doc package through scripts/fetch_demo_video.sh (cached in .cache/demo/). Each video below is a
different segment of it, so tests that need two source videos (a train/val split by video) get two distinct
ones, and each carries a property the pipeline must handle: an NTSC 29.97 fps rate, 28 fps, 1080p, a
variable frame rate, a clip shorter than the labelled window. Tests, benchmarks and scripts/image_e2e.py
import this module; ``make(name, folder)`` writes a video once and returns its path.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# vtest's people are 80-200 px tall in 768x576; YOLO at its default 640 px input finds about a third of them
# in the whole frame, so each video is a crop of the busy path (people 2x larger relative to the frame).
# Crop windows and segments were picked by counting detections (score >= 0.4) on 1 frame in 20 for a grid of
# crops over the whole of vtest: these give 3-5 people per frame.

# 10.01 s at 30000/1001 (300 frames) from seconds 0-10: the 384x288 window at (384, 72), unscaled.
PEOPLE_2997 = "people_29.97fps_10s.mp4"
# 10.000 s at 28 fps (280 frames) from seconds 10-20: the 384x288 window at (288, 144), scaled to 352x264.
PEOPLE_28 = "people_28fps_10s.mp4"
# 2.6 s from seconds 60-62.6: the 480x270 window at (288, 100), upscaled 4x to 1920x1080. vtest's 10 fps is
# blended up to 30 fps (every frame differs from its neighbours, which the frame-exact cut test needs), then
# every 5th frame after the first 1.5 s is dropped: a variable frame rate (30/1 nominal, 2130/77 average).
PEOPLE_1080P_VFR = "people_1080p_vfr_2.6s.mp4"
# 10 s at 30 fps (300 frames) from seconds 30-40, vtest's whole 768x576 frame: 5-8 people at a time (its
# busiest stretch by eye), for benchmarks/bench_annotate.py's page of several people.
PEOPLE_VTEST_10S = "people_vtest_10s.mp4"

# name -> (options before the input: where in vtest, filters, options of the output: how many frames)
RECIPES: dict[str, tuple[tuple[str, ...], str, tuple[str, ...]]] = {
    PEOPLE_2997: (("-ss", "0"), "crop=384:288:384:72,fps=30000/1001", ("-frames:v", "300")),
    PEOPLE_28: (("-ss", "10"), "crop=384:288:288:144,scale=352:264,fps=28", ("-frames:v", "280")),
    PEOPLE_VTEST_10S: (("-ss", "30"), "fps=30", ("-frames:v", "300")),
    PEOPLE_1080P_VFR: (
        ("-ss", "60", "-t", "2.6"),
        "crop=480:270:288:100,framerate=30,scale=1920:1080,select='lt(n\\,45)+mod(n\\,5)'",
        ("-fps_mode", "vfr"),
    ),
}
X264 = ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-an")


@functools.cache
def vtest() -> Path:
    """The path of vtest.avi, fetched from the Debian package registry on first use."""
    script = REPO / "scripts" / "fetch_demo_video.sh"
    out = subprocess.run(["bash", str(script)], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def ffmpeg(*args: str) -> None:
    """Run the real ffmpeg quietly; a failure raises with its message."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def make(name: str, folder: Path) -> Path:
    """``folder/name`` made from vtest by its recipe, unless it is already there (written atomically)."""
    out = folder / name
    if out.is_file():
        return out
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{name}.partial{out.suffix}"
    before, filters, after = RECIPES[name]
    ffmpeg(*before, "-i", str(vtest()), "-vf", filters, *after, *X264, str(partial))
    partial.rename(out)
    return out


BENCH_ONLY = {PEOPLE_VTEST_10S}  # not made for the tests' session (``make_all``)


def make_all(folder: Path) -> dict[str, Path]:
    return {name: make(name, folder) for name in RECIPES if name not in BENCH_ONLY}
