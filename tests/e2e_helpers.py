"""Helpers for tests that run real processes (dora dataflows, the console, the validator CLI)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VALIDATOR = REPO / "scripts" / "validate_dataset_format.py"


def processes_mentioning(marker: str) -> list[int]:
    """Processes whose command line or environment names `marker` (our tmp dir)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            blob = Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in blob and int(pid) != os.getpid():
            found.append(int(pid))
    return found


def assert_valid(root: Path) -> dict:
    result = subprocess.run([sys.executable, str(VALIDATOR), "--target", str(root)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return json.loads((root / "meta" / "info.json").read_text())


def copy_dataflow(workdir: Path) -> Path:
    shutil.copy(REPO / "dataflow.yml", workdir / "dataflow.yml")
    (workdir / "nodes").symlink_to(REPO / "nodes")
    return workdir / "dataflow.yml"
