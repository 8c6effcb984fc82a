"""The workers' local artifact cache: workers sharing one cache folder unpack and fetch the same artifact at
once (two detector workers of one clip do, in one process or in `make up`)."""

import threading
from pathlib import Path

from avaforge.archive import pack_dir
from services.common.artifacts import LocalCache


def test_concurrent_unpacks_and_fetches_of_one_artifact_all_succeed(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, store = s3
    src = tmp_path / "src"
    src.mkdir()
    for i in range(200):
        (src / f"img_{i:05d}.jpg").write_bytes(bytes([i % 251]) * 20_000)
    ref = store.put("rawframes", pack_dir(src), ".tar")
    cache_root = tmp_path / "cache"
    start = threading.Barrier(6)
    folders, files, errors = [], [], []

    def worker() -> None:
        cache = LocalCache(store, cache_root)  # one per worker, one folder shared: as in the services
        start.wait()
        try:
            folders.append(cache.folder(ref))
            files.append(cache.file(ref, ".tar"))
        except Exception as exc:  # the race this guards against: one worker's rename under another's feet
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(folders)) == 1 and len(set(files)) == 1
    (folder,) = set(folders)
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in src.iterdir())
    assert pack_dir(folder) == pack_dir(src)
    assert files[0].read_bytes() == pack_dir(src)
    assert [p.name for p in cache_root.rglob("*.partial")] == []  # no leftovers
