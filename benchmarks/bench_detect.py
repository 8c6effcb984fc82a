"""Detection recall on the hand-labelled benchmark (``benchmarks/detect_labels``): per input configuration,
recall and precision at IoU 0.5 on clear people, recall on hard ones, CPU ms per frame.

``make bench-detect`` runs every configuration on every set; ``--sets`` / ``--configs`` pick a subset.
A configuration is a fixed input size (``960``), tiles (``640t2x2``) or ``auto`` (the per-clip plan of
``avaforge.detection.sizing``: a probe on 8 of the set's frames, as prepare does on a clip's rawframes), on
the default model (``detect.precision``: int8) or, prefixed ``fp32:``, on the fp32 export (``fp32:640`` is
the detect stage before the size rule and int8, the baseline of the cost goal, measured in the same run).
Besides the cost per frame, each row gives the detect stage's CPU time on a whole clip (``--clip-s``,
vtest.avi's 79.5 s) at each tracking rate (``--rates``): frames detected x cost per frame, plus the probe.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from avaforge.detection import make_detector
from avaforge.detection.sizing import InputPlan, SizedDetector, parse_tag, plan_input, probe_heights
from avaforge.settings import DetectSettings, ViaSettings
from avaforge.stages.detect import frames_to_detect
from avaforge.tracking.metrics import hungarian
from benchmarks.detect_frames import frames_for, label_sets

MATCH_IOU = 0.5
HEIGHT_BINS = (0, 64, 80, 96, 112, 128)  # person height in network-input pixels


def score_frame(dets: np.ndarray, labels: list[list], min_score: float) -> dict[str, int]:
    """Counts for one frame: clear people found/missed, hard found, false boxes (IoU 0.5, one-to-one)."""
    dets = dets[dets[:, 4] >= min_score]
    gt = np.array([r[:4] for r in labels], dtype=np.float64).reshape(-1, 4)
    tags = [r[4] for r in labels]
    pairs = hungarian(dets, gt, MATCH_IOU)
    found = [tags[g] for _, g in pairs]  # a box on a hard or ignored person is neither true nor false
    return {
        "clear": tags.count("clear"),
        "hard": tags.count("hard"),
        "tp": found.count("clear"),
        "hard_tp": found.count("hard"),
        "fp": len(dets) - len(pairs),
    }


def evaluate(
    detector, images: list[np.ndarray], labels: list[list[list]], plan: InputPlan, min_scores: list[float]
) -> dict:
    sized = SizedDetector(detector, plan)
    start, cpu = time.perf_counter(), time.process_time()
    boxes: list[np.ndarray] = []
    for i in range(0, len(images), 8):
        boxes += sized.detect(images[i : i + 8])
    res: dict = {
        "plan": plan.tag,
        "cpu_ms_per_frame": round(1000 * (time.process_time() - cpu) / len(images), 1),
        "wall_ms_per_frame": round(1000 * (time.perf_counter() - start) / len(images), 1),
        "frames": len(images),
    }
    for m in min_scores:
        tot: dict[str, int] = defaultdict(int)
        for b, lab in zip(boxes, labels, strict=True):
            for k, v in score_frame(b, lab, m).items():
                tot[k] += v
        res[f"score>={m:g}"] = {
            **tot,
            "recall": round(tot["tp"] / max(tot["clear"], 1), 3),
            "precision": round(tot["tp"] / max(tot["tp"] + tot["fp"], 1), 3),
            "hard_recall": round(tot["hard_tp"] / max(tot["hard"], 1), 3),
        }
    # clear people found (at the detector's threshold) by their height in the network input, and the scores of
    # the boxes that found them: where the detector's limit lies
    scale = 1 / plan.min_source_px(images[0].shape[:2], 1.0)
    bins: dict[str, list] = {}
    for b, lab in zip(boxes, labels, strict=True):
        clear = [r for r in lab if r[4] == "clear"]
        gt = np.array([r[:4] for r in clear], dtype=np.float64).reshape(-1, 4)
        found = {g: d for d, g in hungarian(b[b[:, 4] >= min_scores[0]], gt, MATCH_IOU)}
        for g, r in enumerate(clear):
            lo = max(x for x in HEIGHT_BINS if x <= (r[3] - r[1]) * scale)
            entry = bins.setdefault(str(lo), [0, 0, []])
            entry[0] += g in found
            entry[1] += 1
            if g in found:
                entry[2].append(round(float(b[b[:, 4] >= min_scores[0]][found[g], 4]), 3))
    res["clear_by_net_height"] = {
        k: {"found": v[0], "of": v[1], "median_score": float(np.median(v[2])) if v[2] else None}
        for k, v in sorted(bins.items(), key=lambda kv: int(kv[0]))
    }
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sets", nargs="*", default=None)
    ap.add_argument(
        "--configs",
        nargs="*",
        default=["fp32:640", "fp32:1280", "640", "960", "1024", "1152", "1280", "auto"],
    )
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    ap.add_argument("--clip-s", type=float, default=79.5, help="clip length for the stage cost (vtest.avi)")
    ap.add_argument("--rates", type=float, nargs="*", default=[10.0, 5.0], help="tracking_fps for the cost")
    ap.add_argument("--model", type=Path, default=None, help="another ONNX file for the unprefixed configs")
    ap.add_argument("--min-person-px", type=float, default=None, help="the size rule's threshold for auto")
    args = ap.parse_args()
    settings = DetectSettings()
    if args.min_person_px:
        settings = replace(settings, min_person_px=args.min_person_px)
    # Cost is CPU time, not wall time: on a shared machine wall time swings several-fold between runs. Without
    # spin-waiting, ONNX Runtime's CPU time is the work itself (the same ops as the default session).
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    detectors = {}
    for precision in ("int8", "fp32"):
        detector = make_detector(replace(settings, auto_size=False, precision=precision))
        model = detector.model_path  # type: ignore[attr-defined]
        if args.model and precision == settings.precision:
            model = args.model
        session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        detector.session = session  # type: ignore[attr-defined]
        detectors[precision] = detector
    # the detector's threshold (= VIA's pre-fill threshold), and the previous defaults: detector 0.25, VIA 0.5
    min_scores = sorted({settings.conf, ViaSettings().min_score, 0.25, 0.5})
    results = []
    for name, spec in label_sets().items():
        if args.sets and name not in args.sets:
            continue
        paths = frames_for(name, spec)
        images = [cv2.imread(str(p)) for p in paths.values()]
        labels = [spec["frames"][str(f)] for f in paths]
        for config in args.configs:
            precision, _, size = config.rpartition(":")
            detector = detectors[precision or settings.precision]
            probe_s = 0.0
            if size == "auto":
                probe = images[:: max(1, len(images) // settings.probe_frames)][: settings.probe_frames]
                cpu = time.process_time()
                plan = plan_input(images[0].shape[:2], probe_heights(detector, probe, settings), settings)
                probe_s = time.process_time() - cpu
            else:
                plan = parse_tag(size)
            r = {
                "set": name,
                "config": config,
                "min_person_px": settings.min_person_px,
                **evaluate(detector, images, labels, plan, min_scores),
            }
            # the detect stage on a whole clip of --clip-s seconds at each tracking rate: frames detected
            # (every 30/fps-th rawframe, keyframes included) x CPU per frame, plus the probe (once per clip)
            r["probe_cpu_s"] = round(probe_s, 2)
            r["stage_cpu_s"] = {
                f"{fps:g}": round(
                    len(frames_to_detect(round(30 * args.clip_s), fps, tuple(range(int(args.clip_s)))))
                    * r["cpu_ms_per_frame"]
                    / 1000
                    + probe_s,
                    1,
                )
                for fps in args.rates
            }
            results.append(r)
            cols = " | ".join(
                f"@{m:g} R {r[f'score>={m:g}']['recall']:.3f} P {r[f'score>={m:g}']['precision']:.3f} "
                f"H {r[f'score>={m:g}']['hard_recall']:.3f}"
                for m in min_scores
            )
            print(
                f"{name:14s} {config:10s} {r['plan']:9s} {r['cpu_ms_per_frame']:7.1f} cpu ms | {cols} | "
                f"stage {r['stage_cpu_s']} cpu s",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
