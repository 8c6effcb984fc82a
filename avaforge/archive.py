"""Folders as single artifacts: deterministic uncompressed tar (sorted names, zero times and owners), so the
same rawframes give the same bytes and therefore the same content-addressed key."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path
from typing import BinaryIO

from avaforge.formats.errors import FormatError


def pack_dir(folder: str | Path) -> bytes:
    folder = Path(folder)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(os.listdir(folder)):
            data = (folder / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def unpack_dir(data: bytes, folder: str | Path, where: str = "archive") -> list[str]:
    """Extract a flat archive made by ``pack_dir``; refuses links, folders and path tricks."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar.getmembers():
                if not member.isfile() or "/" in member.name or member.name.startswith("."):
                    raise FormatError(f"unexpected entry {member.name!r} (flat files only)", where)
                src = tar.extractfile(member)
                assert src is not None
                (folder / member.name).write_bytes(src.read())
                names.append(member.name)
    except tarfile.TarError as exc:
        raise FormatError(f"not a tar archive: {exc}", where) from None
    return names


def write_tree(root: str | Path, out: BinaryIO) -> None:
    """A whole folder tree (e.g. a dataset) as a deterministic tar of relative paths, written to ``out`` one
    file at a time (files are streamed from disk: a dataset of any size never sits in memory)."""
    root = Path(root)
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(path.relative_to(root).as_posix())
            info.size, info.mtime, info.mode = path.stat().st_size, 0, 0o644
            with open(path, "rb") as f:
                tar.addfile(info, f)


def pack_tree(root: str | Path) -> bytes:
    """``write_tree`` into memory (small trees: logs)."""
    buf = io.BytesIO()
    write_tree(root, buf)
    return buf.getvalue()


def pack_tree_file(root: str | Path, dest: str | Path) -> Path:
    """``write_tree`` into the file ``dest`` (datasets: then stored with ``S3Store.put_file``)."""
    with open(dest, "wb") as f:
        write_tree(root, f)
    return Path(dest)


def unpack_tree(data: bytes | Path, root: str | Path, where: str = "archive") -> int:
    """Extract a ``pack_tree`` archive (bytes, or a tar file read member by member); refuses links and
    paths that leave ``root``."""
    root = Path(root).resolve()
    count = 0
    source = {"name": str(data)} if isinstance(data, Path) else {"fileobj": io.BytesIO(data)}
    try:
        with tarfile.open(mode="r:", **source) as tar:  # type: ignore[call-overload]
            for member in tar:
                target = (root / member.name).resolve()
                if not member.isfile() or not target.is_relative_to(root):
                    raise FormatError(f"unsafe entry {member.name!r}", where)
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None
                with open(target, "wb") as f:
                    shutil.copyfileobj(src, f, 1 << 20)
                count += 1
    except tarfile.TarError as exc:
        raise FormatError(f"not a tar archive: {exc}", where) from None
    return count
