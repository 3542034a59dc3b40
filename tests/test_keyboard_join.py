"""The standalone keyboard joins only the dataflow it is meant for: named, or one started here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from e2e_helpers import REPO

from operating_platform.core.join import JoinError, choice_of, choose, connect, connect_to, running_choices
from operating_platform.dataflow.key_relay import RelayEntry, private_dir, relay_dir

HERE, THERE = Path("/home/me/task"), Path("/home/other/run")
UUID_HERE, UUID_THERE = "01a2339b-79ce-7974-933e-3bedb60805c1", "01a2339b-79ce-7974-933e-3bedb60805c2"
RUN_HERE = choice_of(RelayEntry(UUID_HERE, str(HERE), "", 11, "/nowhere/a.sock"))
RUN_THERE = choice_of(RelayEntry(UUID_THERE, str(THERE), "", 12, "/nowhere/b.sock"))
STARTED = choice_of(RelayEntry("01a2339b-79ce-7974-933e-3bedb60805c7", str(THERE), "", 13, "/nowhere/c.sock"), name="pick")


def test_unnamed_joins_only_a_dataflow_started_in_this_folder():
    assert choose([RUN_HERE], None, HERE) is RUN_HERE
    with pytest.raises(JoinError) as err:
        choose([RUN_THERE], None, HERE)
    assert f"--dataflow={UUID_THERE}" in str(err.value) and str(THERE) in str(err.value), "the choices are listed"
    with pytest.raises(JoinError, match="--dataflow=pick"):
        choose([STARTED], None, HERE)
    with pytest.raises(JoinError, match="no dataflow is running"):
        choose([], None, HERE)


def test_two_dataflows_started_here_are_ambiguous():
    second = choice_of(RelayEntry("01a2339b-79ce-7974-933e-3bedb60805c9", str(HERE), "", 14, "/nowhere/d.sock"))
    with pytest.raises(JoinError) as err:
        choose([RUN_HERE, second], None, HERE)
    assert "several dataflows were started here" in str(err.value)
    assert f"--dataflow={UUID_HERE}" in str(err.value) and "--dataflow=01a2339b-79ce-7974-933e-3bedb60805c9" in str(err.value)
    assert choose([RUN_HERE, second], UUID_HERE, HERE) is RUN_HERE
    with pytest.raises(JoinError, match="several running dataflows are"):
        choose([RUN_HERE, second], str(HERE), THERE)


def test_named_joins_that_one_or_refuses_listing_the_running_ones():
    assert choose([RUN_HERE, STARTED], "pick", HERE) is STARTED
    assert choose([STARTED], STARTED.entry.uuid, HERE) is STARTED
    assert choose([RUN_THERE], str(THERE), HERE) is RUN_THERE
    with pytest.raises(JoinError) as err:
        choose([RUN_THERE, STARTED], "other", HERE)
    assert "no running dataflow is 'other'" in str(err.value) and "--dataflow=pick" in str(err.value)


def write_sidecar(directory: Path, entry: RelayEntry) -> None:
    (directory / f"{entry.uuid}.json").write_text(json.dumps(entry.__dict__))


def test_stale_entries_are_gone_and_a_refused_connection_is_a_clear_error(tmp_path):
    directory = private_dir(tmp_path / "relays")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_sidecar(directory, RelayEntry(UUID_THERE, str(THERE), "", dead.pid, str(directory / "x.sock")))
    (directory / "junk.json").write_text("{not json")
    alive = RelayEntry(UUID_HERE, str(HERE), "", os.getpid(), str(directory / "nobody-listens.sock"))
    write_sidecar(directory, alive)
    choices = running_choices(None, directory)
    assert [c.entry for c in choices] == [alive], "the dead pid's entry and the unreadable one are not listed"
    with pytest.raises(JoinError, match=f"dataflow {UUID_HERE} is gone"):
        connect(choices[0])
    with pytest.raises(JoinError, match="did not listen within 0.3 s"):
        connect_to(UUID_THERE, 0.3, directory)


def test_a_relay_directory_others_may_enter_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(JoinError, match="not a directory private to uid"):
        running_choices(None, shared)
    assert relay_dir({"XDG_RUNTIME_DIR": "/run/user/7"}) == Path("/run/user/7/operating_platform")
    assert relay_dir({}) == Path(f"/tmp/operating_platform-{os.getuid()}")


def test_keyboard_script_refuses_with_nothing_to_join(tmp_path):
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path / "runtime")}
    result = subprocess.run([sys.executable, str(REPO / "nodes" / "keyboard.py"), "--coordinator=127.0.0.1:1"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr == "keyboard.py: no dataflow is running (start one: dora run dataflow.yml)\n"
