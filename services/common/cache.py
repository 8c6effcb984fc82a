"""The local cache directory of a service process."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def cache_dir(prefix: str) -> Iterator[Path]:
    """``$AVAFORGE_CACHE_DIR`` when set (the operator's: kept), else a private temporary directory that is
    removed when the process stops, so restarts do not pile up directories in /tmp."""
    configured = os.environ.get("AVAFORGE_CACHE_DIR")
    if configured:
        yield Path(configured)
        return
    with tempfile.TemporaryDirectory(prefix=f"avaforge-{prefix}-") as tmp:
        yield Path(tmp)
