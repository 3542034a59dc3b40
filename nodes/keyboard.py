"""The `keyboard` node, and the terminal program that feeds it keys.

    dora run dataflow.yml                            # terminal 1 (dora spawns this file as the `keyboard` node)
    python nodes/keyboard.py                         # terminal 2, same folder: n save, r re-record, p proceed, e exit
    python nodes/keyboard.py --dataflow NAME|UUID|FOLDER   # any other dataflow: named explicitly

Spawned by dora, it relays keys from a socket into the dataflow (dataflow/key_relay.py). Run
from a terminal, it connects to the socket of the dataflow started in this folder (or the one
named) and lists the choices otherwise. (`python operating_platform/core/main.py` does both in one terminal.)
"""

import argparse
import os
import sys
from pathlib import Path


def relay() -> None:
    from operating_platform.dataflow.key_relay import KeyRelay
    from operating_platform.dataflow.runtime import connect, emitter, run_events

    node = connect("keyboard")
    with KeyRelay(emitter(node), node.dataflow_id(), Path.cwd()) as keys:
        run_events(node, keys.on_input, done=lambda: keys.done, on_stop=keys.on_stop, on_closed=keys.on_closed)


def terminal() -> None:
    from operating_platform.core.join import JoinError, choose, connect, running_choices
    from operating_platform.core.launcher import DEFAULT_COORDINATOR_PORT

    parser = argparse.ArgumentParser(prog="nodes/keyboard.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataflow", help="name (dora start --name), UUID, or the folder the dataflow was started in")
    parser.add_argument("--coordinator", default=f"127.0.0.1:{DEFAULT_COORDINATOR_PORT}", help="host:port (names of dora start dataflows)")
    args = parser.parse_args()
    try:
        choice = choose(running_choices(args.coordinator), args.dataflow, Path.cwd())
        client = connect(choice)
    except JoinError as exc:
        print(f"keyboard.py: {exc}", file=sys.stderr)
        sys.exit(2)

    from operating_platform.core.console import run_session
    from operating_platform.dataflow.keyboard import terminal_or_no_keys

    print(f"joined {choice.description} as its keyboard", flush=True)
    with client:
        run_session(client, terminal_or_no_keys(sys.stdin))


if __name__ == "__main__":
    if "DORA_NODE_CONFIG" in os.environ:  # spawned by dora
        relay()
    else:
        terminal()
