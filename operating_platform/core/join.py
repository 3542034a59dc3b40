"""Which running dataflow a keyboard (`python nodes/keyboard.py`, or the console) connects to.

Every running dataflow's `keyboard` node listens on a socket described by a sidecar in the
user's relay directory (dataflow/key_relay.py). Keys stop recordings, so a keyboard never
joins a dataflow by accident: it joins the one named with `--dataflow` (a `dora start
--name`, a UUID, or the folder the dataflow was started in), or, unnamed, only one started
in the current folder. Anything else (none, several) is refused with the list of choices.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from operating_platform.dataflow.key_relay import RelayClient, RelayDirError, RelayEntry, RelayGone, relay_dir, running_relays

from .launcher import DEFAULT_COORDINATOR_PORT, dora_binary


class JoinError(RuntimeError):
    """Why the keyboard will not join, with the choices there are."""


@dataclass(frozen=True)
class DataflowChoice:
    names: tuple[str, ...]  # what --dataflow may say to pick it
    description: str
    entry: RelayEntry

    @property
    def folder(self) -> Path:
        return Path(self.entry.folder)


def choice_of(entry: RelayEntry, name: str = "") -> DataflowChoice:
    name = entry.name or name
    return DataflowChoice(tuple(n for n in (name, entry.uuid, entry.folder) if n),
                          f"{name or 'dataflow'} {entry.uuid} started in {entry.folder} (keyboard pid {entry.pid})", entry)


def coordinator_names(coordinator: str) -> dict[str, str]:
    """{uuid: name} of the dataflows a `dora up` coordinator runs (empty when none listens there)."""
    host, _, port = coordinator.partition(":")
    port = port or str(DEFAULT_COORDINATOR_PORT)
    with socket.socket() as probe:
        probe.settimeout(0.5)
        if probe.connect_ex((host or "127.0.0.1", int(port))) != 0:
            return {}
    try:
        listing = subprocess.run([dora_binary(), "list", "--format", "json", "--status", "running", "--coordinator-addr",
                                  host or "127.0.0.1", "--coordinator-port", port],
                                 capture_output=True, text=True, timeout=15).stdout
    except subprocess.TimeoutExpired:
        return {}
    names = {}
    for line in listing.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        uuid, name = str(entry.get("uuid") or entry.get("id") or ""), str(entry.get("name") or "")
        if uuid and name:
            names[uuid] = name
    return names


def running_choices(coordinator: str | None = f"127.0.0.1:{DEFAULT_COORDINATOR_PORT}", directory: Path | None = None) -> list[DataflowChoice]:
    """Every dataflow whose keyboard relay runs, named by `dora start --name` where the coordinator knows it."""
    try:
        entries = running_relays(directory)
    except RelayDirError as exc:
        raise JoinError(str(exc)) from None
    names = coordinator_names(coordinator) if entries and coordinator else {}
    return [choice_of(e, names.get(e.uuid, "")) for e in entries]


def choose(choices: list[DataflowChoice], wanted: str | None, cwd: Path) -> DataflowChoice:
    listed = "".join(f"\n  --dataflow={c.names[0]}    {c.description}" for c in choices)
    if wanted:
        picked = [c for c in choices if wanted in c.names or Path(wanted).resolve() == c.folder]
        if len(picked) == 1:
            return picked[0]
        what = "several running dataflows are" if picked else "no running dataflow is"
        raise JoinError(f"{what} {wanted!r}" + (f"; running:{listed}" if choices else
                                                " (no dataflow with a keyboard is running)"))
    if not choices:
        raise JoinError("no dataflow is running (start one: dora run dataflow.yml)")
    here = [c for c in choices if c.folder == cwd.resolve()]
    if len(here) == 1:
        return here[0]
    if here:
        raise JoinError("several dataflows were started here; name the one to join:" +
                        "".join(f"\n  --dataflow={c.entry.uuid}    {c.description}" for c in here))
    raise JoinError("not joining a dataflow that was not started here; name the one to join:" + listed)


def connect(choice: DataflowChoice) -> RelayClient:
    try:
        return RelayClient(choice.entry)
    except OSError as exc:  # RelayGone: a stale entry
        raise JoinError(str(exc)) from None


def connect_to(uuid: str, timeout_s: float, directory: Path | None = None) -> RelayClient:
    """The console's own dataflow's keyboard, once its relay listens (it starts with the other nodes).
    With `--dora.coordinator`, the daemon's XDG_RUNTIME_DIR must be the console's (the nodes inherit the daemon's)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            found = [e for e in running_relays(directory) if e.uuid == uuid]
        except RelayDirError as exc:
            raise JoinError(str(exc)) from None
        if found:
            try:
                return RelayClient(found[0])
            except RelayGone:
                pass
        if time.monotonic() > deadline:
            raise JoinError(f"the keyboard node of dataflow {uuid} did not listen within {timeout_s:g} s "
                            f"(looked in {directory or relay_dir()})")
        time.sleep(0.2)
