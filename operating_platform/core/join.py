"""Which running dataflow a standalone keyboard (`python nodes/keyboard.py`) may join.

Keys stop recordings, so the keyboard never joins a dataflow by accident: it joins the one
named with `--dataflow` (a `dora start --name`, a UUID, or the folder a `dora run` was
started in), or, unnamed, only a `dora run` started in the current folder. Anything else
(none, several, another user's daemon) is refused with the list of choices.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .launcher import DEFAULT_COORDINATOR_PORT, dora_binary

DEFAULT_DAEMON_PORT = 53291


class JoinError(RuntimeError):
    """Why the keyboard will not join, with the choices there are."""


@dataclass(frozen=True)
class DataflowChoice:
    names: tuple[str, ...]  # what --dataflow may say to pick it
    description: str
    uuid: str | None = None  # known before joining for coordinator dataflows; `dora run` ones learn it on join
    folder: Path | None = None  # where a `dora run` was started


def listening_pid(port: int) -> int | None:
    """The process with a TCP socket listening on `port` (None: nobody, or a process we may not inspect)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(fd) in inodes for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return int(pid)
        except OSError:
            continue
    return None


def running_choices(daemon_port: int = DEFAULT_DAEMON_PORT, coordinator: str = f"127.0.0.1:{DEFAULT_COORDINATOR_PORT}") -> list[DataflowChoice]:
    """Dataflows reachable through the daemon on `daemon_port`: a `dora run`, or those of the coordinator."""
    pid = listening_pid(daemon_port)
    if pid is None:
        return []
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    if b"run" in args:
        folder = Path(os.readlink(f"/proc/{pid}/cwd"))
        spec = args[args.index(b"run") + 1].decode() if args.index(b"run") + 1 < len(args) else "?"
        return [DataflowChoice((str(folder),), f"dora run {spec} in {folder} (pid {pid})", folder=folder)]
    host, _, port = coordinator.partition(":")
    try:
        listing = subprocess.run([dora_binary(), "list", "--format", "json", "--status", "running", "--coordinator-addr", host,
                                  "--coordinator-port", port or str(DEFAULT_COORDINATOR_PORT)],
                                 capture_output=True, text=True, timeout=15).stdout
    except subprocess.TimeoutExpired:
        return []
    choices = []
    for line in listing.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        uuid, name = str(entry.get("uuid") or entry.get("id") or ""), str(entry.get("name") or "")
        if uuid:
            choices.append(DataflowChoice(tuple(n for n in (name, uuid) if n), f"{name or '(unnamed)'} {uuid} (dora start)", uuid=uuid))
    return choices


def choose(choices: list[DataflowChoice], wanted: str | None, cwd: Path) -> DataflowChoice:
    listed = "".join(f"\n  --dataflow={c.names[0]}    {c.description}" for c in choices)
    if wanted:
        picked = [c for c in choices if wanted in c.names or (c.folder and Path(wanted).resolve() == c.folder)]
        if len(picked) == 1:
            return picked[0]
        raise JoinError(f"no running dataflow is {wanted!r}" + (f"; running:{listed}" if choices else
                                                              " (no dataflow with a keyboard is running)"))
    if not choices:
        raise JoinError("no dataflow is running (start one: dora run dataflow.yml)")
    here = [c for c in choices if c.folder == cwd.resolve()]
    if len(here) == 1:
        return here[0]
    raise JoinError("not joining a dataflow that was not started here; name the one to join:" + listed)
