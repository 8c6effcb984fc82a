"""The int8 detector is made by one function from the registry weights, and the same inputs give the same
bytes (the content-addressed caches and the services' byte identity with an embedded run rest on it)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from avaforge.detection import model_files
from avaforge.detection.model_files import BASE_IMGSZ, detector_model, file_digest, onnx_model
from avaforge.detection.quantize import CANVAS_HW, GRIDS, calibration_frames, int8_path, quantize_model


@pytest.mark.slow
def test_quantizing_twice_gives_the_same_bytes_as_the_cached_model(tmp_path: Path) -> None:
    weights = model_files.default_weights()
    fp32 = onnx_model(weights, BASE_IMGSZ)
    cached, version = detector_model(None, BASE_IMGSZ, "int8")
    assert cached == int8_path(weights)
    assert version == f"{weights.name}:{file_digest(weights)[:16]}:int8-{file_digest(cached)[:16]}"
    a = tmp_path / "a.onnx"
    quantize_model(fp32, a)  # a second time (the cached one is the first): same bytes
    assert file_digest(a) == file_digest(cached)
    model = onnx.load(str(a))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # the head stays float (quantized, it scored every person 0); the backends read the export's metadata
    head = [n for n in model.graph.node if n.name.startswith("/model.23/")]
    assert head and not any(n.op_type.endswith("QuantizeLinear") for n in head)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["names"] == "{0: 'person'}" and meta["stride"] == "32"


def test_calibration_frames_are_the_package_photos_at_several_scales() -> None:
    frames = calibration_frames()
    assert len(frames) == 2 * len(GRIDS) and {f.shape for f in frames} == {(*CANVAS_HW, 3)}
    # the two single-image frames differ (one starts with each photo); so do the grids of each size
    assert all((frames[i] != frames[i + 1]).any() for i in range(0, len(frames), 2))
