"""Regenerate the detection benchmark's frames from vtest.avi with ffmpeg (the frames are not committed).

Each label file in ``benchmarks/detect_labels/`` names its source video, the ffmpeg filter that derives its
frames (none, an upscale to 1080p, a cropped close-up) and the 0-based frame numbers it labels; this script
writes ``<cache>/<set>/<frame:04d>.png`` for every set. vtest.avi comes from ``scripts/fetch_demo_video.sh``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABELS = ROOT / "benchmarks" / "detect_labels"
CACHE = ROOT / ".cache" / "detect_bench"


def demo_video() -> Path:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "fetch_demo_video.sh")], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def label_sets() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(LABELS.glob("*.json"))}


def extract(video: Path, frames: list[int], vf: str | None, out: Path) -> list[Path]:
    """Decode ``frames`` (0-based) of ``video`` through the filter ``vf`` into PNGs named by frame number."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{f:04d}.png" for f in frames]
    if all(p.is_file() for p in paths):
        return paths
    select = "select='" + "+".join(f"eq(n\\,{f})" for f in frames) + "'"
    chain = ",".join([select, *([vf] if vf else [])])
    tmp = out / "tmp_%04d.png"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(video), "-vf", chain, "-fps_mode", "passthrough", str(tmp)],
        check=True,
    )
    for i, path in enumerate(paths, start=1):  # ffmpeg numbers selected frames 1..n in order
        (out / f"tmp_{i:04d}.png").replace(path)
    return paths


def frames_for(name: str, spec: dict, cache: Path = CACHE) -> dict[int, Path]:
    frames = sorted(int(f) for f in spec["frames"])
    paths = {f: cache / name / f"{f:04d}.png" for f in frames}
    if all(p.is_file() for p in paths.values()):
        return paths
    video = demo_video() if spec["source"] == "vtest.avi" else Path(spec["source"])
    return dict(zip(frames, extract(video, frames, spec.get("ffmpeg_vf"), cache / name), strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cache", type=Path, default=CACHE)
    args = ap.parse_args()
    for name, spec in label_sets().items():
        print(name, len(frames_for(name, spec, args.cache)), "frames in", args.cache / name)


if __name__ == "__main__":
    main()
