"""The standalone keyboard joins only the dataflow it is meant for: named, or a `dora run` started here."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from e2e_helpers import REPO

from operating_platform.core.join import DataflowChoice, JoinError, choose, listening_pid, running_choices

HERE, THERE = Path("/home/me/task"), Path("/home/other/run")
RUN_HERE = DataflowChoice((str(HERE),), f"dora run dataflow.yml in {HERE}", folder=HERE)
RUN_THERE = DataflowChoice((str(THERE),), f"dora run dataflow.yml in {THERE}", folder=THERE)
STARTED = DataflowChoice(("pick", "01a2339b-79ce-7974-933e-3bedb60805c7"), "pick 01a2... (dora start)", uuid="01a2339b-79ce-7974-933e-3bedb60805c7")


def test_unnamed_joins_only_a_dora_run_started_in_this_folder():
    assert choose([RUN_HERE], None, HERE) is RUN_HERE
    with pytest.raises(JoinError) as err:
        choose([RUN_THERE], None, HERE)
    assert f"--dataflow={THERE}" in str(err.value), "the choices are listed"
    with pytest.raises(JoinError, match="--dataflow=pick"):
        choose([STARTED], None, HERE)
    with pytest.raises(JoinError, match="no dataflow is running"):
        choose([], None, HERE)


def test_named_joins_that_one_or_refuses_listing_the_running_ones():
    assert choose([RUN_THERE, STARTED], "pick", HERE) is STARTED
    assert choose([STARTED], STARTED.uuid, HERE) is STARTED
    assert choose([RUN_THERE], str(THERE), HERE) is RUN_THERE
    with pytest.raises(JoinError) as err:
        choose([RUN_THERE, STARTED], "other", HERE)
    assert "no running dataflow is 'other'" in str(err.value) and "--dataflow=pick" in str(err.value)


def test_the_process_behind_a_daemon_port_is_found():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert listening_pid(port) == os.getpid()
    assert running_choices(port) == []  # nobody listens any more


def test_keyboard_script_refuses_with_nothing_to_join(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    result = subprocess.run([sys.executable, str(REPO / "nodes" / "keyboard.py"), f"--daemon-port={free}"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr == "keyboard.py: no dataflow is running (start one: dora run dataflow.yml)\n"
