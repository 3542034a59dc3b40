"""The console loop on synthetic status events (as the keyboard node's socket delivers them, and
through a real relay socket): scripted keys start with recording, `e` drains, the drain
messages operators look for are printed, malformed status is ignored."""

import io
import json
import re
import shutil
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest

from operating_platform.core.console import Console, ConsoleState, key_feedback
from operating_platform.core.progress import StartupProgress
from operating_platform.dataflow.keyboard import ScriptedKeys, parse_key_script
from operating_platform.dataflow.key_relay import KeyRelay, RelayClient, running_relays
from operating_platform.dataflow.messages import RecorderStatus, SaverStatus, decode_key, encode_status


class EventSource:
    """Stands in for the keyboard node's socket: replays status events, records the keys sent."""

    def __init__(self, events):
        self.events = list(events)
        self.sent = []

    def next(self, timeout=None):
        if not self.events:
            return None
        return self.events.pop(0)

    def send_key(self, key):
        self.sent.append(("key", key))


def status(input_id, **fields):
    record = RecorderStatus(**fields) if input_id == "recorder_status" else SaverStatus(**fields)
    return {"type": "INPUT", "id": input_id, "value": encode_status(record), "metadata": {}}


def test_scripted_exit_drains_and_reports():
    events = [
        status("recorder_status", phase="waiting_for_inputs"),
        status("recorder_status", phase="recording", episode=0, num_episodes=3, frame=5, episode_frames=90, frames_sent=5),
        {"type": "ERROR", "error": "timeout"},
        status("saver_status", frames_received=5, queue_depth=0, pending=0),
        {"type": "INPUT", "id": "saver_status", "value": pa.array(["garbage"]), "metadata": {}},
        status("saver_status", draining=True, pending=2, completed=1),
        status("saver_status", draining=True, pending=2, completed=1),
        status("recorder_status", phase="done", frames_kept=90, frames_sent=90),
        status("saver_status", done=True, queued=3, completed=3, failed=0, frames_committed=90, sequence_gaps=0),
        status("saver_status", done=True),  # never read: the console stops at the first `done`
    ]
    node = EventSource(events)
    out = io.StringIO()
    keys = ScriptedKeys(parse_key_script("e"))
    state = Console(node, keys, out=out, interactive=False).run()
    text = out.getvalue()
    assert node.sent == [("key", "e")]
    assert text.count("Waiting for 2 pending saves...") == 1
    assert "Save stats: queued=3 completed=3 failed=0" in text
    assert "dropped 0" in text and "ignored malformed saver_status" in text
    assert state.finished and len(node.events) == 1


def test_keys_are_not_sent_before_recording_and_dataflow_end_stops_the_loop():
    node = EventSource([status("recorder_status", phase="waiting_for_inputs")] * 3)
    state = Console(node, ScriptedKeys(parse_key_script("n")), out=io.StringIO(), interactive=False).run()
    assert node.sent == [] and not state.finished


def test_a_saver_that_cannot_save_stops_the_session():
    node = EventSource([
        status("recorder_status", phase="recording", episode=0, num_episodes=3),
        status("saver_status", fatal="cannot open the dataset: disk full"),
        status("saver_status", fatal="cannot open the dataset: disk full", done=True),
    ])
    out = io.StringIO()
    state = Console(node, ScriptedKeys([]), out=out, interactive=False).run()
    assert node.sent == [("key", "e")] and "disk full" in out.getvalue() and state.finished


def test_status_line_wording_at_the_last_episode_and_at_the_end():
    state = ConsoleState(recorder=RecorderStatus(phase="saving", episode=3, num_episodes=3))
    assert state.line().startswith("episode 3/3 saving |")
    state = ConsoleState(recorder=RecorderStatus(phase="done", episodes_saved=3, episode=3, num_episodes=3))
    assert state.line().startswith("done: 3 episodes recorded |")
    assert ConsoleState(recorder=RecorderStatus(phase="done", episodes_saved=1)).line().startswith("done: 1 episode recorded |")


def test_every_key_is_answered_at_once_even_when_it_does_nothing():
    events = [status("recorder_status", phase="recording", episode=1, num_episodes=3, frame=2, episode_frames=90)] * 40
    node = EventSource(events)
    out = io.StringIO()
    Console(node, ScriptedKeys(parse_key_script("p,n")), out=out, interactive=False, dataset="/data/x").run()
    text = out.getvalue()
    assert "recording into /data/x — keys: n save, r re-record, p proceed, e exit" in text
    assert "p: nothing to proceed from while recording" in text and "n: ending episode 2 and saving it" in text
    assert node.sent == [("key", "p"), ("key", "n")]
    assert key_feedback("p", ConsoleState(recorder=RecorderStatus(phase="resetting", episode=2, num_episodes=3))) == \
        "p: reset pause skipped, episode 3 starts"
    assert key_feedback("r", ConsoleState(recorder=RecorderStatus(phase="recording", episode=0))) == \
        "r: discarding episode 1; it is recorded again"


def test_start_up_steps_show_the_elapsed_time():
    out = io.StringIO()
    progress = StartupProgress(out, interactive=False, started_at=time.monotonic() - 2.5)
    progress.step("starting the dataflow")
    progress.done()
    assert re.fullmatch(r"\[  2\.\d s\] starting the dataflow\n", out.getvalue())


def test_start_up_progress_counts_in_place_on_a_terminal():
    out = io.StringIO()
    with StartupProgress(out, interactive=True) as progress:
        progress.step("starting a private dora coordinator")
        time.sleep(0.5)  # a few ticks redraw the line with the time so far
        progress.step("starting the dataflow")
    screen = out.getvalue()
    assert screen.count("\n") == 2, "one line per step, redrawn in place with \\r"
    assert screen.count("\r\x1b[2K[") >= 4 and re.search(r"starting a private dora coordinator \.\.\. 0\.[2-9] s", screen)
    assert re.search(r"\[  0\.0 s\] starting a private dora coordinator \(0\.\d s\)\n", screen), "a finished step keeps its duration"
    assert re.search(r"\[  0\.\d s\] starting the dataflow \(0\.0 s\)\n$", screen)


def test_the_summary_names_lost_frames_and_the_session_is_a_failure():
    node = EventSource([
        status("recorder_status", phase="finishing", frames_kept=90, errors=[], rejected={"out of order": 2}),
        status("saver_status", done=True, queued=2, completed=2, failed=0, frames_received=90, frames_committed=60,
               duplicates=1, reordered=1, rejected={"duplicate": 1},
               errors=["30 received frames were not committed (received 90, committed 60, discarded 0)"]),
    ])
    out = io.StringIO()
    state = Console(node, ScriptedKeys([]), out=out, interactive=False).run()
    text = out.getvalue()
    assert "frames recorded 90, handed over 90, committed 60, kept for recovery 0, dropped 30" in text
    assert "duplicates 1, reordered 1, rejected by the saver {'duplicate': 1}, by the recorder {'out of order': 2}" in text
    assert state.problems() == ["saver: 30 received frames were not committed (received 90, committed 60, discarded 0)"]
    assert "✗ saver: 30 received frames" in text


def test_a_clean_session_has_no_problems_and_a_vanished_saver_is_one():
    clean = Console(EventSource([
        status("recorder_status", phase="finishing", frames_kept=30, errors=[]),
        status("saver_status", done=True, frames_received=30, frames_committed=30, errors=[]),
    ]), ScriptedKeys([]), out=io.StringIO(), interactive=False).run()
    assert clean.problems() == []
    gone = Console(EventSource([
        status("recorder_status", phase="done", frames_kept=30, errors=["the saver exited (its status stream closed)"]),
    ]), ScriptedKeys([]), out=io.StringIO(), interactive=False).run()
    assert gone.problems()[0].startswith("the saver never reported its end") and len(gone.problems()) == 2


def test_a_renamed_status_field_fails_loudly_instead_of_showing_0():
    renamed = asdict(SaverStatus(done=True, frames_committed=90))
    renamed["frames_saved"] = renamed.pop("frames_committed")
    out = io.StringIO()
    state = Console(EventSource([
        status("recorder_status", phase="done", frames_kept=90),
        {"type": "INPUT", "id": "saver_status", "value": pa.array([json.dumps(renamed)]), "metadata": {}},
    ]), ScriptedKeys([]), out=out, interactive=False).run()
    assert "ignored malformed saver_status: status: SaverStatus has no field frames_saved" in out.getvalue()
    assert not state.finished, "a status the console cannot read is not taken for a finished save"
    # The console renders fields: a record lacking one it shows is an error, never a silent 0.
    fields = {k: v for k, v in asdict(SaverStatus(done=True)).items() if k != "frames_committed"}
    state.saver = SimpleNamespace(**fields, frames_saved=90)
    with pytest.raises(AttributeError, match="frames_committed"):
        state.problems()


def test_a_session_through_the_keyboard_nodes_real_socket():
    """The relay (in a thread, as the dora node would run it) and the console on either end of its socket."""
    directory = Path(tempfile.mkdtemp(prefix="kb", dir="/tmp")) / "relays"
    keys = []
    relay = KeyRelay(lambda output, value, metadata: keys.append(decode_key(value)), "uuid-1", directory.parent,
                     directory=directory, say=lambda text: None)
    relay.open()

    def recorder_and_saver():
        """What the dataflow does: record until n, then until e, then drain and exit."""
        deadline = time.monotonic() + 20
        try:
            for episode, key in enumerate(("n", "e")):
                while key not in keys and time.monotonic() < deadline:
                    relay.on_input("recorder_status", encode_status(RecorderStatus(phase="recording", episode=episode, num_episodes=3)), {})
                    time.sleep(0.02)
            relay.on_input("recorder_status", encode_status(RecorderStatus(phase="done", episodes_saved=2, frames_kept=60)), {})
            relay.on_input("saver_status", encode_status(SaverStatus(done=True, queued=2, completed=2, frames_committed=60)), {})
            relay.on_closed("recorder_status")
            relay.on_closed("saver_status")
        finally:
            relay.close()  # the console's loop ends when the relay hangs up, whatever happened here

    dataflow = threading.Thread(target=recorder_and_saver, daemon=True)
    try:
        [entry] = running_relays(directory)
        with RelayClient(entry) as client:
            dataflow.start()
            out = io.StringIO()
            state = Console(client, ScriptedKeys(parse_key_script("n@0.2,e@0.2")), out=out, interactive=False).run()
        dataflow.join(20)
        assert not dataflow.is_alive()
        assert keys == ["n", "e"] and state.finished and state.problems() == []
        assert "n: ending episode 1 and saving it" in out.getvalue() and "Save stats: queued=2 completed=2 failed=0" in out.getvalue()
        assert not directory.exists() or list(directory.iterdir()) == []
    finally:
        relay.close()
        shutil.rmtree(directory.parent)
