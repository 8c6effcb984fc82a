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

# 10.01 s at 30000/1001 (300 frames) from seconds 0-10, scaled to 640x480: YOLO's 640 input sees the people at
# the scale it would see the original, with 2.4x fewer pixels to decode and write than 768x576.
PEOPLE_2997 = "people_29.97fps_10s.mp4"
# 10.000 s at 28 fps (280 frames) from seconds 40-50, 352x264: another rate, size and set of people.
PEOPLE_28 = "people_28fps_10s.mp4"
# 2.6 s from seconds 60-62.6, pillarboxed to 1920x1080 (no stretch). vtest's 10 fps is blended up to 30 fps
# (every frame differs from its neighbours, which the frame-exact cut test needs), then every 5th frame after
# the first 1.5 s is dropped: a variable frame rate (30/1 nominal, a lower average), as phones write.
PEOPLE_1080P_VFR = "people_1080p_vfr_2.6s.mp4"

# name -> (options before the input: where in vtest, filters, options of the output: how many frames)
RECIPES: dict[str, tuple[tuple[str, ...], str, tuple[str, ...]]] = {
    PEOPLE_2997: (("-ss", "0"), "scale=640:480,fps=30000/1001", ("-frames:v", "300")),
    PEOPLE_28: (("-ss", "40"), "scale=352:264,fps=28", ("-frames:v", "280")),
    PEOPLE_1080P_VFR: (
        ("-ss", "60", "-t", "2.6"),
        "framerate=30,scale=1440:1080,pad=1920:1080:240:0,select='lt(n\\,45)+mod(n\\,5)'",
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


def make_all(folder: Path) -> dict[str, Path]:
    return {name: make(name, folder) for name in RECIPES}
