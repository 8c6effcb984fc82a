"""int8 static quantization (QDQ) of the detector's ONNX export, calibrated on vtest.avi frames that the
detection benchmark does not label, for ``bench_detect.py --model``: does a cheaper pass keep recall?

Usage: ``quantize_detector.py OUT.onnx [--imgsz 1280] [--frames 16]``. Calibration: every 97th frame of
vtest.avi from frame 5 (none of them a labelled frame), letterboxed as the detector does at ``imgsz``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from avaforge.detection.model_files import detector_model
from avaforge.detection.prepost import preprocess
from benchmarks.detect_frames import demo_video

LABELS = Path(__file__).resolve().parent / "detect_labels" / "vtest.json"


class Frames(CalibrationDataReader):
    def __init__(self, images: list[np.ndarray], imgsz: int, name: str) -> None:
        self.feeds = iter([{name: preprocess([im], imgsz)[0]} for im in images])

    def get_next(self) -> dict | None:
        return next(self.feeds, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--imgsz", type=int, default=1280)
    ap.add_argument("--frames", type=int, default=16)
    args = ap.parse_args()
    labelled = {int(f) for f in json.loads(LABELS.read_text())["frames"]}
    cap = cv2.VideoCapture(str(demo_video()))
    images, n = [], 0
    while len(images) < args.frames:
        ok, frame = cap.read()
        if not ok:
            break
        if n % 97 == 5 and n not in labelled:
            images.append(frame)
        n += 1
    model, _ = detector_model(None, args.imgsz)
    prepared = args.out.with_suffix(".prep.onnx")
    quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
    import onnxruntime as ort

    name = ort.InferenceSession(str(prepared), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    # The detection head (model.23) stays float: its one output tensor holds pixel coordinates (0..imgsz)
    # and scores (0..1) side by side, and one int8 scale for both left every score at 0 (recall 0.000 on
    # vtest in the first try, which quantized it too).
    import onnx

    head = [n.name for n in onnx.load(str(prepared)).graph.node if n.name.startswith("/model.23/")]
    quantize_static(
        str(prepared),
        str(args.out),
        Frames(images, args.imgsz, name),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,  # 7-bit weights: no u8s8 overflow on AVX2 CPUs without VNNI (this one)
        nodes_to_exclude=head,
    )
    prepared.unlink()
    print(f"{args.out}: calibrated on {len(images)} frames at {args.imgsz}")


if __name__ == "__main__":
    main()
