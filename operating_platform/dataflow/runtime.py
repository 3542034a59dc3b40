"""The one dora event loop every node script shares, so nodes/*.py stay a few lines long."""

from __future__ import annotations

import logging
from typing import Callable


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
