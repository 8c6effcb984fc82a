"""Facts of the deployment that override a job's settings: where and how detection runs.

A job's settings say *what* to compute (model, image size, thresholds); the cluster decides *where*: with
``AVAFORGE_DETECT_BACKEND=triton`` every detection runs on the Triton server at ``AVAFORGE_TRITON_URL``
whatever backend the job named, so detector pods stay light clients and the GPU sits in Triton. The
backends give the same boxes (tests/test_triton_backend.py), so the override does not change results.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from avaforge.settings import DetectSettings

BACKENDS = ("onnx", "ultralytics", "triton")


def deployed_detect_settings(s: DetectSettings, env: Mapping[str, str] = os.environ) -> DetectSettings:
    backend = env.get("AVAFORGE_DETECT_BACKEND") or s.backend
    if backend not in BACKENDS:
        raise ValueError(f"AVAFORGE_DETECT_BACKEND={backend!r}: choose one of {', '.join(BACKENDS)}")
    s = dataclasses.replace(s, backend=backend)
    if backend == "triton" and env.get("AVAFORGE_TRITON_URL"):
        s = dataclasses.replace(s, triton_url=env["AVAFORGE_TRITON_URL"])
    return s
