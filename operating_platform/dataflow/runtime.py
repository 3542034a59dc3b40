"""The one dora event loop every node script shares, so nodes/*.py stay a few lines long."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Callable


def divert_native_output(path: Path) -> None:
    """dora's node API (Rust) writes its own log lines on fds 1 and 2: at WARN, every timer tick
    dropped while the node was busy and transport diagnostics, teardown messages once the dataflow
    has ended. From now on they go to `path`; Python's sys.stdout/sys.stderr keep writing where
    they did, so the run's output shows our lines and tracebacks only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    streams = [("stdout", 1), ("stderr", 2)]
    saved = {}
    for name, fd in streams:
        getattr(sys, name).flush()
        saved[name] = os.dup(fd)
    with open(path, "ab") as log:
        for _, fd in streams:
            os.dup2(log.fileno(), fd)
    for name, _ in streams:
        setattr(sys, name, os.fdopen(saved[name], "w", buffering=1))


def dora_messages_log(dataflow_id: object, node_name: str) -> Path:
    """Where a node's dora messages go: beside dora's own logs of the run (out/<dataflow id>/)."""
    return Path.cwd() / "out" / str(dataflow_id) / f"dora_{node_name}.log"


def connect(node_name: str):
    """dora's Node() for this node script, its dora messages diverted to dora_messages_log()."""
    from dora import Node

    node = Node()
    divert_native_output(dora_messages_log(node.dataflow_id(), node_name))
    return node


def emitter(node) -> Callable[[str, object, dict], None]:
    """Adapts dora's send_output to the logic classes' `emit(output_id, value, metadata)`."""

    def emit(output_id: str, value: object, metadata: dict) -> None:
        node.send_output(output_id, value, metadata)

    return emit


def run_events(
    node,
    on_input: Callable[[str, object, dict], None],
    done: Callable[[], bool] = lambda: False,
    on_stop: Callable[[], None] | None = None,
    on_closed: Callable[[str], None] | None = None,
    until_closed: str | None = None,
) -> None:
    """Dispatch events until `done()` or the input `until_closed` closes (its sender exited).

    STOP ends the loop unless `on_stop` is given (it then decides, through done()).
    """
    for event in node:
        kind = event["type"]
        if kind == "INPUT":
            on_input(event["id"], event["value"], event.get("metadata") or {})
        elif kind == "STOP":
            if on_stop is None:
                return
            on_stop()
        elif kind == "INPUT_CLOSED":
            if event["id"] == until_closed:
                return
            if on_closed is not None:
                on_closed(event["id"])
        elif kind == "ERROR":
            logging.getLogger(__name__).warning("dora event error: %s", event.get("error"))
        if done():
            return
