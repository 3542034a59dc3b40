"""Join a running recording dataflow as its dynamic `keyboard` node, from a terminal.

    dora run dataflow.yml                            # terminal 1
    python nodes/keyboard.py                         # terminal 2, same folder: n save, r re-record, p proceed, e exit
    python nodes/keyboard.py --dataflow NAME|UUID|FOLDER   # any other dataflow: named explicitly

It joins only the dataflow it is told to (or a `dora run` started in this folder) and
lists the choices otherwise. (`python operating_platform/core/main.py` does both in one terminal.)
"""

import argparse
import sys
import tempfile
from pathlib import Path

from operating_platform.core.join import DEFAULT_DAEMON_PORT, JoinError, choose, running_choices
from operating_platform.core.launcher import DEFAULT_COORDINATOR_PORT

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="nodes/keyboard.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataflow", help="name (dora start --name), UUID, or the folder a `dora run` was started in")
    parser.add_argument("--daemon-port", type=int, default=DEFAULT_DAEMON_PORT, help="daemon to join through")
    parser.add_argument("--coordinator", default=f"127.0.0.1:{DEFAULT_COORDINATOR_PORT}", help="host:port (dora start dataflows)")
    args = parser.parse_args()
    try:
        choice = choose(running_choices(args.daemon_port, args.coordinator), args.dataflow, Path.cwd())
    except JoinError as exc:
        print(f"keyboard.py: {exc}", file=sys.stderr)
        sys.exit(2)

    from dora import Node

    from operating_platform.core.console import run_session
    from operating_platform.dataflow.runtime import node_logs_to
    from operating_platform.dataflow.keyboard import terminal_or_no_keys

    log = Path(tempfile.gettempdir()) / "keyboard-node.log"
    with node_logs_to(log):
        node = Node("keyboard", daemon_port=args.daemon_port)
        if choice.uuid and node.dataflow_id() != choice.uuid:
            print(f"keyboard.py: the daemon joined dataflow {node.dataflow_id()}, not {choice.uuid}; leaving it", file=sys.stderr)
            sys.exit(2)
        print(f"joined {choice.description} as its keyboard (dora's own messages: {log})", flush=True)
        run_session(node, terminal_or_no_keys(sys.stdin))
