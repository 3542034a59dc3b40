"""Join a running recording dataflow as its dynamic `keyboard` node, from a terminal.

    dora run dataflow.yml          # terminal 1
    python nodes/keyboard.py       # terminal 2: n save, r re-record, p proceed, e exit

(`python operating_platform/core/main.py` does both in one terminal.)
"""

import sys
import tempfile
from pathlib import Path

from dora import Node

from operating_platform.core.console import run_session
from operating_platform.core.launcher import node_logs_to
from operating_platform.dataflow.keyboard import terminal_or_no_keys

if __name__ == "__main__":
    with node_logs_to(Path(tempfile.gettempdir()) / "keyboard-node.log"):
        run_session(Node("keyboard"), terminal_or_no_keys(sys.stdin))
