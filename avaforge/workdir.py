"""The embedded runner's local artifact folder: where each stage's output of each clip lives."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avaforge import pipeline
from avaforge.formats.actions import ActionList
from avaforge.formats.errors import FormatError
from avaforge.fsutil import atomic_write_bytes
from avaforge.settings import PipelineSettings

MANIFEST = "avaforge.json"


@dataclass(frozen=True)
class ClipPaths:
    root: Path

    @property
    def clip(self) -> Path:
        return self.root / "clip.mp4"

    @property
    def clip_json(self) -> Path:
        return self.root / "clip.json"

    @property
    def rawframes(self) -> Path:
        return self.root / "rawframes"

    @property
    def frames_json(self) -> Path:
        return self.root / "frames.json"

    @property
    def detections(self) -> Path:
        return self.root / "detections.npz"

    @property
    def tracks(self) -> Path:
        return self.root / "tracks.json"

    @property
    def proposals(self) -> Path:
        return self.root / "proposals.pkl"

    @property
    def keys(self) -> Path:
        return self.root / "stages.json"

    def files(self, artifact: str) -> list[Path]:
        """Where the clip's ``artifact`` (one of the ``writes`` of ``avaforge.pipeline``) is kept here."""
        return {
            "clip": [self.clip, self.clip_json],
            "rawframes": [self.rawframes, self.frames_json],
            "detections": [self.detections],
            "tracks": [self.tracks],
            "proposals": [self.proposals],
        }[artifact]

    def stage_keys(self) -> dict[str, str]:
        return json.loads(self.keys.read_text()) if self.keys.exists() else {}

    def set_stage_key(self, stage: str, key: str) -> None:
        keys = self.stage_keys()
        keys[stage] = key
        atomic_write_bytes(self.keys, json.dumps(keys, indent=1, sort_keys=True).encode())


@dataclass(frozen=True)
class Workdir:
    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    def clip(self, clip_id: str) -> ClipPaths:
        return ClipPaths(self.root / "clips" / clip_id)

    def outputs(self, clip_id: str, stage: str) -> list[Path]:
        """The files ``stage`` leaves for the clip: those of each artifact it writes (``avaforge.pipeline``);
        the VIA project and zip go to ``via/``."""
        from avaforge.stages.via_export import export_paths  # a stage module: loaded only when asked

        via = export_paths(self.via, clip_id)
        elsewhere = {"project": [via.project], "archive": [via.archive]}
        writes = pipeline.stage(stage).writes
        return [f for a in writes for f in elsewhere.get(a) or self.clip(clip_id).files(a)]

    @property
    def via(self) -> Path:
        return self.root / "via"

    @property
    def autolabel(self) -> Path:
        return self.root / "autolabel"

    def labels(self, clip_id: str) -> Path:
        return self.root / "labels" / f"{clip_id}.json"

    def review_labels(self, clip_id: str) -> Path:
        """A second annotator's review pass of the clip (ClipLabels); the adjudicated result is ``labels``."""
        return self.root / "labels" / "review" / f"{clip_id}.json"

    def suggestions(self, clip_id: str) -> Path:
        return self.autolabel / f"{clip_id}.suggestions.json"

    def write_manifest(self, data: dict[str, Any]) -> None:
        atomic_write_bytes(self.manifest, json.dumps(data, indent=1).encode())

    def read_manifest(self) -> dict[str, Any]:
        if not self.manifest.exists():
            raise FormatError("not an avaforge work folder (run `avaforge prepare` first)", str(self.root))
        return json.loads(self.manifest.read_text())

    def settings(self) -> PipelineSettings:
        return PipelineSettings.from_dict(self.read_manifest()["settings"], str(self.manifest))

    def actions(self) -> ActionList:
        return ActionList.from_obj(self.read_manifest()["actions"], str(self.manifest))

    def clip_ids(self) -> list[str]:
        return [c for v in self.read_manifest()["videos"] for c in v["clips"]]
