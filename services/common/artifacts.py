"""Getting artifacts into local files for a stage function, once per content digest."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from avaforge.archive import unpack_dir
from avaforge.storage import ArtifactRef, ArtifactStore


class LocalCache:
    def __init__(self, store: ArtifactStore, root: Path) -> None:
        self.store = store
        self.root = root

    def folder(self, ref: ArtifactRef) -> Path:
        """A tar artifact (e.g. rawframes) unpacked; reused while its digest is the same."""
        target = self.root / "dirs" / ref.digest
        if not target.is_dir():
            # a folder of its own per unpack: workers sharing the cache (threads of one process, processes of
            # `make up`) unpack the same clip at once, and a shared .partial name let one delete the other's
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{ref.digest[:16]}.", suffix=".partial", dir=target.parent))
            try:
                unpack_dir(self.store.get(ref), tmp, f"{ref.bucket}/{ref.key}")
                try:
                    tmp.rename(target)
                except OSError:  # another worker's identical copy got there first
                    if not target.is_dir():
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def file(self, ref: ArtifactRef, suffix: str = "") -> Path:
        target = self.root / "files" / f"{ref.digest}{suffix}"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            self.store.get_file(ref, target)  # streamed (a source video may be gigabytes), verified
        return target
