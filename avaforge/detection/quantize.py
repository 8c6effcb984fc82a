"""The int8 person detector: static QDQ quantization of the cached fp32 ONNX export, made once per weights.

On CPU it costs about half of fp32 per pass at equal input size, and its scores sit higher, so people near the
size limit clear the threshold at a smaller input (``make bench-detect``, benchmarks/RESULTS.md "int8 as the
default"). The file is cached by content: the weights' digest and ``RECIPE`` (bump it whenever the calibration
images, the quantizer options or the excluded nodes change), and the same inputs give the same bytes (the
services' Triton and an embedded run load byte-identical models; tests/test_quantize.py checks it).

Calibration images come from a registry package, not from any video the benchmark labels: ultralytics' two
sample photos (``assets/bus.jpg``: four people standing in a street; ``assets/zidane.jpg``: two men indoors),
alone and tiled into grids of 2x2 to 6x6 on a 4:3 canvas, so the activations' ranges cover people from full
frame height down to about 60 px, the sizes the detector must find (``detect.min_person_px``).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import numpy as np

from avaforge.detection.model_files import cache_dir, file_digest
from avaforge.formats.errors import FormatError

RECIPE = 1
CALIBRATION_IMAGES = ("bus.jpg", "zidane.jpg")
CANVAS_HW = (960, 1280)  # 4:3 like most surveillance sources; the letterbox makes it 768x1024 at CALIB_IMGSZ
GRIDS = (1, 2, 3, 4, 6)  # cells per side: people from full height to ~1/6 of it (bus.jpg's ~60-130 px)
CALIB_IMGSZ = 1024  # the input size the clip plans choose most (vtest: 1024-1152)
HEAD = "/model.23/"  # the detection head stays float: see quantize_model


def int8_path(weights: Path) -> Path:
    return cache_dir() / "models" / f"{weights.stem}-{file_digest(weights)[:16]}-int8r{RECIPE}.onnx"


def calibration_assets() -> list[Path]:
    """ultralytics' sample photos (the package is there wherever the .pt weights are exported)."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or spec.origin is None:
        raise FormatError("the int8 detector is calibrated on ultralytics' sample images: install it", "")
    folder = Path(spec.origin).parent / "assets"
    paths = [folder / name for name in CALIBRATION_IMAGES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FormatError("ultralytics is installed without its sample images", ", ".join(missing))
    return paths


def _grid(images: list[np.ndarray], n: int, shift: int) -> np.ndarray:
    """An n x n mosaic on the canvas: cell i holds image (i + shift) mod len, fitted, centred, gray padded."""
    import cv2

    h, w = CANVAS_HW
    canvas = np.full((h, w, 3), 114, np.uint8)
    ch, cw = h // n, w // n
    for i in range(n * n):
        im = images[(i + shift) % len(images)]
        r = min(ch / im.shape[0], cw / im.shape[1])
        nh, nw = max(1, round(im.shape[0] * r)), max(1, round(im.shape[1] * r))
        y, x = (i // n) * ch + (ch - nh) // 2, (i % n) * cw + (cw - nw) // 2
        canvas[y : y + nh, x : x + nw] = cv2.resize(im, (nw, nh), interpolation=cv2.INTER_AREA)
    return canvas


def calibration_frames() -> list[np.ndarray]:
    """Deterministic calibration frames (BGR, CANVAS_HW): every grid size, starting with each image."""
    import cv2

    images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in calibration_assets()]
    return [_grid(images, n, shift) for n in GRIDS for shift in range(len(images))]


def quantize_model(fp32: Path, out: Path) -> None:
    """Write the int8 QDQ model of ``fp32`` to ``out`` (calibrated on ``calibration_frames``)."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from avaforge.detection.prepost import preprocess

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        name = ort.InferenceSession(str(prepared), providers=["CPUExecutionProvider"]).get_inputs()[0].name
        feeds = iter([{name: preprocess([f], CALIB_IMGSZ)[0]} for f in calibration_frames()])

        class Frames(CalibrationDataReader):
            def get_next(self) -> dict | None:
                return next(feeds, None)

        # The head's one output tensor holds pixel coordinates (0..imgsz) and scores (0..1) side by side: one
        # int8 scale for both left every score at 0 (recall 0.000 on vtest when it was quantized too).
        head = [n.name for n in onnx.load(str(prepared)).graph.node if n.name.startswith(HEAD)]
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(
            str(prepared),
            str(quantized),
            Frames(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,  # 7-bit weights: no u8s8 overflow on AVX2 CPUs without VNNI
            nodes_to_exclude=head,
        )
        # the export's metadata (class names, stride) is what the backends read; keep it
        model = onnx.load(str(quantized))
        source = {p.key: p.value for p in onnx.load(str(fp32)).metadata_props}
        have = {p.key for p in model.metadata_props}
        for key in sorted(set(source) - have):
            model.metadata_props.add(key=key, value=source[key])
        onnx.save(model, str(quantized))
        os.replace(quantized, out)


def int8_model(weights: Path, fp32: Path) -> Path:
    """The int8 model of ``weights`` (``fp32`` is its cached fp32 export), made once and cached."""
    target = int8_path(weights)
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        quantize_model(fp32, target)
    return target
