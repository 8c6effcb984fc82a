"""Where each file of an AVA dataset lives (one definition shared by writer, validator and trainer)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "val")


@dataclass(frozen=True)
class DatasetLayout:
    root: Path

    @property
    def annotations(self) -> Path:
        return self.root / "annotations"

    @property
    def rawframes(self) -> Path:
        return self.root / "rawframes"

    @property
    def action_list(self) -> Path:
        return self.annotations / "action_list.pbtxt"

    @property
    def included_timestamps(self) -> Path:
        return self.annotations / "included_timestamps.txt"

    def csv(self, split: str) -> Path:
        return self.annotations / f"{split}.csv"

    def excluded(self, split: str) -> Path:
        return self.annotations / f"{split}_excluded_timestamps.csv"

    def proposals(self, split: str) -> Path:
        return self.annotations / f"dense_proposals_{split}.pkl"

    def frame_dir(self, video_id: str) -> Path:
        return self.rawframes / video_id

    def content_files(self) -> list[Path]:
        """Relative paths of the files that depend only on the input and settings, so two builds of the same
        input must match byte for byte: all but report/ (it names its folder) and provenance.json (it records
        whether labels were machine-made)."""
        return [
            p.relative_to(self.root)
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and p.relative_to(self.root).parts[0] != "report" and p.name != "provenance.json"
        ]

    @classmethod
    def find(cls, path: str | Path) -> DatasetLayout:
        """A dataset root, or a folder holding the annotation files directly (as the seed leaves them)."""
        root = Path(path)
        markers = ("train.csv", "val.csv", "action_list.pbtxt")
        if not (root / "annotations").is_dir() and any((root / m).exists() for m in markers):
            return _FlatLayout(root)
        return cls(root)


class _FlatLayout(DatasetLayout):
    @property
    def annotations(self) -> Path:
        return self.root
