"""scripts/install.sh refuses a new venv up front when the disk cannot hold it (not ENOSPC halfway)."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_install_refuses_new_venv_without_disk_and_creates_nothing(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = {**os.environ, "VENV": str(venv), "AVAFORGE_MIN_FREE_GB": "1000000"}
    proc = subprocess.run(
        ["bash", "scripts/install.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert f"not enough disk for a new venv at {venv}" in proc.stderr
    assert "1000000 GB needed" in proc.stderr
    assert not venv.exists()
