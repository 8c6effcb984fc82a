"""The local CLI works without the generated gRPC stubs (avaforge/v1, not committed; `make protos` writes it).

Each command runs in a fresh interpreter whose import system refuses ``avaforge.v1``, as in a checkout where
the stubs were never generated; only ``avaforge remote`` needs them, and it says so.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Refuses avaforge.v1 (as if the stubs were missing), runs the CLI, reports which avaforge modules loaded.
NO_STUBS = """
import json, sys

class NoStubs:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[:2] == ["avaforge", "v1"]:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoStubs())
from avaforge.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:  # as the interpreter does: a message goes to stderr with status 1
    rc = exc.code if isinstance(exc.code, int) else (print(exc.code, file=sys.stderr) or 1)
print(json.dumps({"rc": rc, "modules": sorted(m for m in sys.modules if m.startswith("avaforge"))}))
"""


def run_cli(*args: str, cwd: Path) -> tuple[int, list[str], str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", NO_STUBS, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )
    out_lines = proc.stdout.strip().splitlines()
    result = json.loads(out_lines[-1])
    return result["rc"], result["modules"], "\n".join(out_lines[:-1]), proc.stderr


def test_help_and_prepare_help_without_stubs(tmp_path: Path) -> None:
    rc, modules, out, _ = run_cli("--help", cwd=tmp_path)
    assert rc == 0 and "remote" in out and "prepare" in out
    rc, modules, out, _ = run_cli("prepare", "--help", cwd=tmp_path)
    assert rc == 0 and "--actions" in out
    assert not any(m.startswith("avaforge.v1") or m == "avaforge.cli_remote" for m in modules)


def test_prepare_and_validate_run_without_stubs(tmp_path: Path) -> None:
    actions = tmp_path / "actions.yaml"
    actions.write_text("groups:\n  body: [stand, walk]\n")
    # prepare imports the whole embedded pipeline, then stops at the missing input with its usage error (2)
    rc, modules, _, err = run_cli(
        "prepare", "missing.mp4", "--actions", str(actions), "--out", "work", cwd=tmp_path
    )
    assert rc == 2 and "missing.mp4: file not found" in err
    assert {"avaforge.runner", "avaforge.stages.detect", "avaforge.stages.via_export"} <= set(modules)
    # validate reads an empty folder to the end: every file mmaction2 needs is reported missing (exit 1)
    rc, modules, out, _ = run_cli("validate", str(tmp_path), "--json", cwd=tmp_path)
    report = json.loads(out)
    assert rc == 1 and not report["ok"] and report["errors"] >= 1
    assert "avaforge.validation.dataset" in modules


def test_remote_names_the_missing_stubs(tmp_path: Path) -> None:
    """The block above is real: the one command that needs the stubs fails, with what to run."""
    rc, modules, _, err = run_cli("remote", "--server", "127.0.0.1:1", "jobs", cwd=tmp_path)
    assert rc == 1 and "generated gRPC stubs" in err and "make protos" in err
    assert not any(m.startswith("avaforge.v1") for m in modules)
