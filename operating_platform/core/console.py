"""The operator console loop: keys in, one live status line out, and a drain on exit.

It talks to the dataflow through its `keyboard` node's socket (dataflow/key_relay.py's
RelayClient): keys go in, the recorder's and saver's status come out. `e` (or Ctrl-C) asks the recorder
to finish; the console then waits while the saver drains pending saves, printing
`Waiting for N pending saves...` and the end-of-run summary (dataflow/summary.py words both).
It renders the typed status records of the message contract, field by field.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from operating_platform.dataflow.messages import MessageError, RecorderStatus, SaverStatus, decode_status
from operating_platform.dataflow.summary import session_lines, waiting_line

from .progress import StartupProgress

STATUS_PERIOD_S = 0.2
KEY_HELP = "keys: n save, r re-record, p proceed, e exit"
STATUS_INPUTS = {"recorder_status": RecorderStatus, "saver_status": SaverStatus}
SAVER_GONE_S = 5.0  # the recorder is done but the saver never reported done: stop waiting after this


class KeySource(Protocol):
    def poll(self, now: float) -> list[str]: ...


@dataclass
class ConsoleState:
    recorder: RecorderStatus = field(default_factory=RecorderStatus)
    saver: SaverStatus = field(default_factory=SaverStatus)

    @property
    def finished(self) -> bool:
        return self.saver.done

    @property
    def in_flight(self) -> int:
        """Frames sent by the recorder not yet received by the saver (0 at the end, or frames were lost)."""
        return self.recorder.frames_sent - self.saver.frames_received

    @property
    def phase(self) -> str:
        return self.recorder.phase

    @property
    def episode_number(self) -> int:
        """1-based; the count stops at num_episodes (after the last episode the recorder's index is past it)."""
        number = self.recorder.episode + 1
        total = self.recorder.num_episodes
        return min(number, total) if total else number

    def line(self) -> str:
        r, s = self.recorder, self.saver
        phase = self.phase
        if phase == "done":
            saved = r.episodes_saved
            episode = f"done: {saved} episode{'' if saved == 1 else 's'} recorded"
        else:
            episode = f"episode {self.episode_number}/{r.num_episodes or '?'} "
            episode += f"frame {r.frame}/{r.episode_frames or '?'}" if phase == "recording" else phase
        return (f"{episode} | save queue {s.queue_depth} pending {s.pending} | "
                f"saved {s.completed} failed {s.failed} | "
                f"dropped {s.sequence_gaps} (in flight {max(self.in_flight, 0)})")

    @property
    def frames_lost(self) -> int:
        """Frames the recorder kept (episodes ended with save) that the saver neither committed nor
        kept in its spool for recovery."""
        s = self.saver
        return self.recorder.frames_kept - s.frames_committed - s.frames_kept_in_spool

    def problems(self) -> list[str]:
        """Why this session is not a success (empty: every recorded frame was committed)."""
        r, s = self.recorder, self.saver
        found = []
        if not s.done:
            found.append("the saver never reported its end (it died or hung); what it took stays in its spool")
        found += [f"recorder: {e}" for e in r.errors]
        found += [f"saver: {e}" for e in s.errors]
        if s.fatal and not s.errors:
            found.append(f"saver: {s.fatal}")
        if s.failed and not s.errors:
            found.append(f"saver: {s.failed} episode saves failed ({s.last_error})")
        if self.frames_lost and not found:
            found.append(f"{self.frames_lost} recorded frames were not committed")
        return found


class Link(Protocol):
    """The dataflow as the console sees it: status events in (dora's event shape), keys out."""

    def next(self, timeout: float | None = None) -> dict | None: ...

    def send_key(self, key: str) -> None: ...


class Console:
    """Drives one recording session through a Link (the keyboard node's socket)."""

    def __init__(self, node: Link, keys: KeySource, out: TextIO | None = None, interactive: bool = True,
                 progress: StartupProgress | None = None, dataset: str = ""):
        self.node = node
        self.keys = keys
        self.out = out or sys.stdout
        self.interactive = interactive
        self.progress = progress or StartupProgress(self.out, interactive=False)
        self.dataset = dataset
        self.recording_started = False
        self.state = ConsoleState()
        self.exit_requested = False
        self._said_waiting = False
        self._heard_recorder = False
        self._last_line = 0.0
        self._recorder_done_at: float | None = None

    def request_exit(self) -> None:
        """`e` or Ctrl-C: the recorder saves what it has and finishes; pending saves are drained."""
        if not self.exit_requested:
            self.exit_requested = True
            self._print("exit requested: finishing the episode and draining saves")
            self.node.send_key("e")

    def run(self) -> ConsoleState:
        while not self.state.finished and not self._saver_gone():
            event = self.node.next(timeout=0.05)
            if event is None:  # the dataflow has ended (the keyboard node hung up)
                break
            if event["type"] == "INPUT":
                self._on_status(event["id"], event["value"])
            now = time.monotonic()
            if self.state.phase == "recording":
                self._on_recording_started()
                if hasattr(self.keys, "start"):
                    r = self.state.recorder
                    self.keys.start(now, take=(r.episode, r.episodes_discarded))
            for key in self.keys.poll(now):
                if key == "e":
                    self.request_exit()
                else:
                    self._print(key_feedback(key, self.state))
                    self.node.send_key(key)
            self._show_progress(now)
        self.progress.done()
        self._finish_line()
        return self.state

    def _on_recording_started(self) -> None:
        if not self.recording_started:
            self.recording_started = True
            self.progress.done()
            where = f"recording into {self.dataset} — " if self.dataset else "recording — "
            self._print(self.progress.stamp(where + KEY_HELP))

    def _saver_gone(self) -> bool:
        """The recorder ended but the saver never reported its end: stop waiting for it after SAVER_GONE_S."""
        if self.state.recorder.phase != "done":
            return False
        now = time.monotonic()
        self._recorder_done_at = self._recorder_done_at or now
        return now - self._recorder_done_at > SAVER_GONE_S

    def _on_status(self, input_id: str, value) -> None:
        kind = STATUS_INPUTS.get(input_id)
        if kind is None:
            self._print(f"ignored input {input_id}: not a status stream")
            return
        try:
            status = decode_status(value, kind)
        except MessageError as exc:
            self._print(f"ignored malformed {input_id}: {exc}")
            return
        if isinstance(status, RecorderStatus):
            if not self._heard_recorder and status.phase == "waiting_for_inputs":
                self.progress.step("recorder and saver are up; waiting for the first frame of every camera and arm")
            self._heard_recorder = True
            self.state.recorder = status
        else:
            self.state.saver = status
            if status.fatal and not self.exit_requested:
                self._print(f"saver: {status.fatal}")
                self.request_exit()  # nothing can be saved: stop recording instead of going on for nothing
            if status.draining and status.pending and not self._said_waiting:
                self._said_waiting = True
                self._print(waiting_line(status.pending))

    def _show_progress(self, now: float) -> None:
        if now - self._last_line < STATUS_PERIOD_S or not self.recording_started:
            return  # until recording starts, the start-up progress line is on screen
        self._last_line = now
        if self.interactive:
            self.out.write("\r\x1b[2K" + self.state.line())
            self.out.flush()

    def _print(self, text: str) -> None:
        if self.interactive:
            self.out.write("\r\x1b[2K")
        self.out.write(text + "\n")
        self.out.flush()

    def _finish_line(self) -> None:
        """The end-of-run summary (worded in dataflow/summary.py), then why the session is not a success."""
        self._print(self.state.line())
        for line in session_lines(self.state.recorder, self.state.saver, self.state.frames_lost):
            self._print(line)
        for problem in self.state.problems():
            self._print(f"✗ {problem}")


def key_feedback(key: str, state: ConsoleState) -> str:
    """What a key press does now, said at once (a key that does nothing in this phase says so)."""
    phase, number = state.phase, state.episode_number
    if phase == "recording":
        return {"n": f"n: ending episode {number} and saving it",
                "r": f"r: discarding episode {number}; it is recorded again",
                "p": "p: nothing to proceed from while recording (p skips the reset pause; n ends the episode)"}[key]
    if phase == "resetting":
        return {"n": f"{key}: reset pause skipped, episode {number} starts", "p": f"p: reset pause skipped, episode {number} starts",
                "r": "r: nothing to re-record during the reset pause"}[key]
    return f"{key}: ignored while {phase}"


def run_session(node: Link, keys_context, progress: StartupProgress | None = None, dataset: str = "") -> ConsoleState:
    """Run the console until the saver is done; Ctrl-C once = `e` (drain), twice = give up."""
    with keys_context as keys:
        console = Console(node, keys, interactive=sys.stdout.isatty(), progress=progress, dataset=dataset)
        try:
            return console.run()
        except KeyboardInterrupt:
            console.request_exit()
            return console.run()
