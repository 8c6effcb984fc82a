"""Demo video: a trained model's actions on a new video (the seed's last step), encoded with ffmpeg.

The video goes through the same stages as a dataset (30 fps clip, rawframes, detection, tracking); the model
then scores every tracked person at each second's keyframe through the config's own test pipeline, and
every frame is drawn with person boxes, track ids and the actions above ``threshold`` predicted for the
nearest keyframe. The output has exactly the clip's frames at 30 fps.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import ffmpeg
import numpy as np

from avaforge.formats.actions import ActionList
from avaforge.formats.errors import FormatError
from avaforge.formats.pbtxt import read_pbtxt
from avaforge.formats.timeline import FPS, keyframe_index
from avaforge.settings import PipelineSettings
from avaforge.stages.detect import read_frame
from avaforge.stages.frames import FramesInfo
from avaforge.stages.track import Tracks
from avaforge.tracking.metrics import hungarian


@dataclass
class DemoResult:
    video: Path
    frames: int
    predictions: dict[int, list[tuple[int, list[tuple[str, float]]]]]  # second -> [(track id, [(action, p)])]


def _load_model(config: Path, checkpoint: Path):  # type: ignore[no-untyped-def]
    from mmengine.config import Config
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint

    from avaforge.trainer.train import mmengine_checkpoint_globals

    cfg = Config.fromfile(str(config))  # custom_imports installs the mmcv-lite adapter first
    init_default_scope("mmaction")
    from mmaction.registry import MODELS

    model = MODELS.build(cfg.model)
    with mmengine_checkpoint_globals():
        load_checkpoint(model, str(checkpoint), map_location="cpu")
    model.eval()
    return cfg, model, Compose(cfg.test_dataloader.dataset.pipeline)


def render_demo(
    checkpoint: str | Path,
    video: str | Path,
    out: str | Path,
    *,
    config: str | Path | None = None,
    threshold: float = 0.4,
    work: str | Path | None = None,
) -> DemoResult:
    import torch
    from mmengine.dataset import pseudo_collate

    from avaforge.runner import prepare

    checkpoint = Path(checkpoint)
    config = Path(config) if config else checkpoint.parent / "config.py"
    if not config.exists():
        raise FormatError("no config.py beside the checkpoint; pass --config", str(checkpoint))
    cfg, model, pipeline = _load_model(config, checkpoint)
    names = dict(read_pbtxt(cfg.test_dataloader.dataset.label_file))
    custom = cfg.test_dataloader.dataset.get("custom_classes")
    class_ids = custom if custom else sorted(names)
    work_dir = Path(work) if work else Path(tempfile.mkdtemp(prefix="avaforge-demo-"))
    settings = PipelineSettings()
    result = prepare([video], ActionList.from_flat([names[i] for i in sorted(names)]), work_dir, settings)
    clip_dir = work_dir / "clips" / result.clips[0]
    finfo = FramesInfo.from_dict(__import__("json").loads((clip_dir / "frames.json").read_text()))
    tracks = Tracks.load(clip_dir / "tracks.json")
    predictions: dict[int, list[tuple[int, list[tuple[str, float]]]]] = {}
    for t in finfo.keyframe_seconds:
        rows = tracks.at_second(t)
        if not len(rows):
            continue
        scale = np.array([finfo.width, finfo.height, finfo.width, finfo.height])
        data = dict(
            frame_dir=str(clip_dir / "rawframes"),
            video_id=finfo.clip_id,
            timestamp=t,
            img_key=f"{finfo.clip_id},{t:04d}",
            shot_info=(0, finfo.num_frames),
            fps=FPS,
            timestamp_start=0,
            timestamp_end=finfo.num_frames // FPS + 1,
            filename_tmpl="img_{:05}.jpg",
            start_index=1,
            modality="RGB",
            proposals=rows.xyxy / scale,
            scores=rows.score,
            gt_bboxes=np.zeros((0, 4), dtype=np.float32),
            gt_labels=np.zeros((0, len(class_ids) + 1), np.float32),
        )
        with torch.no_grad():
            (sample,) = model.test_step(pseudo_collate([pipeline(data)]))
        boxes = sample.pred_instances.bboxes.numpy() * scale
        scores = sample.pred_instances.scores.numpy()
        people = []
        for i, j in hungarian(rows.xyxy, boxes, 0.5):
            acts = [
                (names[class_ids[c - 1]], float(scores[j, c]))
                for c in range(1, scores.shape[1])
                if scores[j, c] >= threshold
            ]
            people.append((int(rows.tracked_ids[i]), sorted(acts, key=lambda a: -a[1])))
        predictions[t] = people
    n = _encode(clip_dir / "rawframes", finfo, tracks, predictions, Path(out))
    return DemoResult(Path(out), n, predictions)


def _encode(
    frame_dir: Path, finfo: FramesInfo, tracks: Tracks, predictions: dict[int, Any], out: Path
) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial.mp4")
    proc = (
        ffmpeg.input("pipe:", format="rawvideo", pix_fmt="bgr24", s=f"{finfo.width}x{finfo.height}", r=FPS)
        .output(str(tmp), vcodec="libx264", pix_fmt="yuv420p", r=FPS, preset="veryfast", crf=20)
        .global_args("-loglevel", "error")
        .overwrite_output()
        .run_async(pipe_stdin=True)
    )
    detected = sorted(tracks.boxes)
    try:
        for frame in range(1, finfo.num_frames + 1):
            image = read_frame(frame_dir, frame)
            nearest = detected[max(0, np.searchsorted(detected, frame, side="right") - 1)]
            second = min(predictions, key=lambda t: abs(keyframe_index(t) - frame), default=None)
            labels = dict(predictions.get(second, [])) if second is not None else {}
            shown = tracks.boxes[nearest]
            for tid, (x1, y1, x2, y2) in zip(shown.tracked_ids, shown.xyxy, strict=True):
                p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
                cv2.rectangle(image, p1, p2, (0, 200, 0), 2)
                text = [f"#{int(tid)}"] + [f"{a} {s:.2f}" for a, s in labels.get(int(tid), [])[:3]]
                for k, line in enumerate(text):
                    y = max(12, p1[1] - 4 - 13 * (len(text) - 1 - k))
                    for color, width in (((0, 0, 0), 3), ((0, 255, 255), 1)):  # outlined: readable anywhere
                        cv2.putText(image, line, (p1[0], y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, width)
            proc.stdin.write(image.tobytes())
        proc.stdin.close()
        if proc.wait() != 0:
            raise FormatError("ffmpeg failed to encode the demo video", str(out))
        tmp.replace(out)
    finally:
        if proc.poll() is None:
            proc.kill()
        tmp.unlink(missing_ok=True)
    return finfo.num_frames
