"""Helpers for tests that run real processes (dora dataflows, the console, the validator CLI)."""

import importlib.util
import json
import os
import queue
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VALIDATOR = REPO / "scripts" / "validate_dataset_format.py"


def load_repo_module(relative: str):
    """Import a file of the checkout that is no package's module (scripts/*.py, benchmarks/*.py) by its path."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses and pickling look the module up by name
    spec.loader.exec_module(module)
    return module


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


class Lines:
    """A process's stdout lines, read by a thread so every wait has a timeout (a test must not hang)."""

    def __init__(self, stream):
        self.queue = queue.Queue()
        self.everything: list[str] = []  # every line read, whether or not next() took it
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.everything.append(line)
            self.queue.put(line)

    def text(self, timeout_s: float = 30) -> str:
        """All the output, once the stream ended (or what came within `timeout_s`)."""
        self._reader.join(timeout_s)
        return "".join(self.everything)

    def next(self, timeout_s: float = 20) -> str:
        """The next line; queue.Empty after `timeout_s` without one."""
        return self.queue.get(timeout=timeout_s)

    def until(self, text: str, timeout_s: float = 60) -> str:
        """Lines up to and including the first that holds `text`; AssertionError (with what was read) if none does in time."""
        seen, deadline = [], time.monotonic() + timeout_s
        while not seen or text not in seen[-1]:
            try:
                seen.append(self.next(max(deadline - time.monotonic(), 0.001)))
            except queue.Empty:
                raise AssertionError(f"{text!r} not shown within {timeout_s:.0f} s; got: {''.join(seen)[-1500:]!r}") from None
        return "".join(seen)


def read_pty_until(fd: int, text: bytes, timeout_s: float = 60) -> bytes:
    """Read a pseudo-terminal's screen until `text` shows or `timeout_s` passes; never blocks longer (select),
    and stops at EOF/EIO, when the program on the other side has gone."""
    screen, deadline = b"", time.monotonic() + timeout_s
    while text not in screen and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: nothing holds the terminal's other side any more
            break
        if not chunk:
            break
        screen += chunk
    return screen


ZENOH_SCOUTING = ("224.0.0.224", 7446)  # zenoh's multicast scouting group


def udp_sockets_of(pids: list[int]) -> set[tuple[str, int]]:
    """(address, port) of every UDP socket the processes hold, from /proc (no ss/netstat needed)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                address, port = fields[1].split(":")
                ip = ".".join(str(b) for b in reversed(bytes.fromhex(address[-8:]))) if len(address) in (8, 32) else address
                found.add((ip, int(port, 16)))
    return found
