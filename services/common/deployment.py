"""Facts of the deployment that override a job's settings: where and how detection runs.

A job's settings say *what* to compute (model, image size, thresholds); the cluster decides *where*: with
``AVAFORGE_DETECT_BACKEND=triton`` every detection runs on the Triton server at ``AVAFORGE_TRITON_URL``
whatever backend the job named, so detector pods stay light clients and the GPU sits in Triton. The
backends give the same boxes (tests/test_triton.py::test_triton_backend_matches_onnx_runtime), so the
override does not change results.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Mapping
from typing import get_args, get_type_hints

from avaforge.detection import Detector, make_detector
from avaforge.settings import DetectSettings

BACKENDS = get_args(get_type_hints(DetectSettings)["backend"])


def deployed_detect_settings(s: DetectSettings, env: Mapping[str, str] = os.environ) -> DetectSettings:
    backend = env.get("AVAFORGE_DETECT_BACKEND") or s.backend
    if backend not in BACKENDS:
        raise ValueError(f"AVAFORGE_DETECT_BACKEND={backend!r}: choose one of {', '.join(BACKENDS)}")
    s = dataclasses.replace(s, backend=backend)
    if backend == "triton" and env.get("AVAFORGE_TRITON_URL"):
        s = dataclasses.replace(s, triton_url=env["AVAFORGE_TRITON_URL"])
    return s


class DetectorPool:
    """One detector per distinct (deployed) settings for the life of a process: models load once, and the
    queue workers and the detector gRPC service share the same rule for which detector a job gets."""

    def __init__(self) -> None:
        self._by_settings: dict[str, Detector] = {}
        self._lock = threading.Lock()  # the gRPC service calls from its thread pool

    def get(self, settings: DetectSettings) -> Detector:
        settings = deployed_detect_settings(settings)
        key = json.dumps(vars(settings), sort_keys=True)
        with self._lock:
            if key not in self._by_settings:
                self._by_settings[key] = make_detector(settings)
            return self._by_settings[key]
