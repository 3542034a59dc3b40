"""Real storage faults for tests: a small tmpfs, a read-only bind mount, a ballast file, dropped capabilities.

Mounting needs root. Not root, the test is skipped with the reason. As root (CI runs as root) or
with CI=true a fault that cannot be set up fails the test: a skip would hide that it was never tried.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _unavailable(reason: str):
    if os.geteuid() == 0 or os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"storage fault tests must run as root (CI does): {reason}")
    pytest.skip(f"{reason} (not root)")


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A real tmpfs of `size` (mount's syntax, e.g. "20m") mounted at `path`."""
    path.mkdir(parents=True, exist_ok=True)
    result = _run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
    if result.returncode != 0:
        _unavailable(f"cannot mount a tmpfs at {path}: {result.stderr.strip() or result.returncode}")
    try:
        yield path
    finally:
        _run(["umount", "-l", str(path)])


@contextlib.contextmanager
def read_only(path: Path):
    """`path` bind-mounted read-only onto itself: writes there fail with EROFS until the block ends."""
    result = _run(["mount", "--bind", str(path), str(path)])
    if result.returncode != 0:
        _unavailable(f"cannot bind-mount {path}: {result.stderr.strip()}")
    try:
        result = _run(["mount", "-o", "remount,bind,ro", str(path)])
        if result.returncode != 0:
            _unavailable(f"cannot remount {path} read-only: {result.stderr.strip()}")
        yield path
    finally:
        _run(["umount", str(path)])


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill_disk(mount: Path, leave_bytes: int) -> Path:
    """A ballast file that leaves about `leave_bytes` free on the filesystem of `mount`."""
    ballast = mount / "ballast.bin"
    size = max(0, free_bytes(mount) - leave_bytes)
    chunk = b"\0" * (1 << 20)
    try:
        with open(ballast, "wb") as f:
            while size > 0:
                f.write(chunk[: min(size, len(chunk))])
                size -= min(size, len(chunk))
    except OSError as e:  # the recording took the last bytes meanwhile: the disk is full, as wanted
        if e.errno != errno.ENOSPC:
            raise
    return ballast


def without_capabilities(argv: list[str]) -> list[str]:
    """`argv` run with every capability dropped, so root obeys file permissions like any user."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        _unavailable("setpriv is not installed (util-linux)")
    return [setpriv, "--inh-caps=-all", "--bounding-set=-all", "--", *argv]


def python_without_capabilities(code: str, argv: list[str] = (), timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter without capabilities (tests/ on its path)."""
    tests_dir = str(Path(__file__).resolve().parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(without_capabilities([sys.executable, "-c", code, *argv]), capture_output=True, text=True,
                          timeout=timeout, env=env)
