"""Models for images and Triton, from the registry packages' weights.

``python -m avaforge.detection.model_repo bake``
    export the person detector (YOLO11n-pose, at every size in ``--imgsz``, and its int8 model,
    avaforge/detection/quantize.py) and the Deep SORT embedder to ONNX into ``$AVAFORGE_CACHE/models``; run
    at image build time, so that the runtime images need neither torch nor ultralytics and never write there
    (read-only root filesystem).
``python -m avaforge.detection.model_repo repo CONFIG OUT``
    write a Triton model repository: ``OUT/<name>/config.pbtxt`` (CONFIG, e.g. deploy/triton/gpu/
    person_detector/config.pbtxt, plus the model's digest as its ``model_digest`` parameter, which clients
    record as the model version) and ``OUT/<name>/1/model.onnx`` (the baked model of the precision that
    CONFIG's ``precision`` parameter names: int8 for the CPU repository, fp32 for the GPU one). The Triton
    pod's init container runs this into the volume Triton serves.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from avaforge.detection.model_files import (
    BASE_IMGSZ,
    default_weights,
    detector_model,
    onnx_model,
    write_baked_manifest,
)
from avaforge.detection.quantize import int8_model
from avaforge.formats.errors import FormatError

TRITON_IMGSZ = BASE_IMGSZ  # the export Triton serves (dynamic shapes: jobs at other sizes use it too)


def bake(sizes: list[int]) -> list[Path]:
    from avaforge.tracking.embedder import onnx_embedder_model

    weights = default_weights()
    exports = {s: onnx_model(weights, s) for s in sorted({*sizes, BASE_IMGSZ})}
    int8 = int8_model(weights, exports[BASE_IMGSZ])
    return [*exports.values(), int8, onnx_embedder_model(), write_baked_manifest(weights, exports, int8)]


def config_precision(text: str, where: str) -> str:
    """The ``precision`` parameter of a Triton model config (fp32 when absent)."""
    match = re.search(r'key:\s*"precision"\s*value:\s*\{\s*string_value:\s*"([^"]*)"', text)
    precision = match.group(1) if match else "fp32"
    if precision not in ("int8", "fp32"):
        raise FormatError(f'precision parameter {precision!r}: choose "int8" or "fp32"', where)
    return precision


def write_repo(config: Path, out: Path) -> Path:
    """Copy ``config`` and the detector export into ``out/<model name>/``; returns the model folder."""
    text = config.read_text()
    match = re.search(r'^name:\s*"([^"]+)"', text, re.M)
    if not match:
        raise FormatError('model config has no name: "..." line', str(config))
    precision = config_precision(text, str(config))
    folder = out / match.group(1)
    (folder / "1").mkdir(parents=True, exist_ok=True)
    model, version = detector_model(None, TRITON_IMGSZ, precision)
    tmp = folder / "1" / ".model.onnx.tmp"
    shutil.copyfile(model, tmp)
    tmp.replace(folder / "1" / "model.onnx")  # Triton never sees a half-written model
    (folder / "config.pbtxt").write_text(text + model_digest_parameter(version))
    return folder


def model_digest_parameter(version: str) -> str:
    """The config lines that make Triton report ``version``'s digest part (after the weights' name)."""
    digest = version.partition(":")[2]
    return f'parameters: {{\n  key: "model_digest"\n  value: {{ string_value: "{digest}" }}\n}}\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avaforge.detection.model_repo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bake", help="export the ONNX models into $AVAFORGE_CACHE/models")
    b.add_argument("--imgsz", type=int, nargs="+", default=[640, 960])
    r = sub.add_parser("repo", help="write a Triton model repository")
    r.add_argument("config", type=Path)
    r.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "bake":
            for path in bake(args.imgsz):
                print(path)
        else:
            print(write_repo(args.config, args.out))
    except (FormatError, OSError) as exc:
        print(f"model_repo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
