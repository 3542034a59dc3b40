"""The operator console loop: keys in, one live status line out, and a drain on exit.

It runs as the dataflow's dynamic `keyboard` node. `e` (or Ctrl-C) asks the recorder
to finish; the console then waits while the saver drains pending saves, printing
`Waiting for N pending saves...` and `Save stats: queued=X completed=X failed=0`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from operating_platform.dataflow.messages import MessageError, decode_status, encode_key

from .progress import StartupProgress

STATUS_PERIOD_S = 0.2
KEY_HELP = "keys: n save, r re-record, p proceed, e exit"
SAVER_GONE_S = 5.0  # the recorder is done but the saver never reported done: stop waiting after this


class KeySource(Protocol):
    def poll(self, now: float) -> list[str]: ...


@dataclass
class ConsoleState:
    recorder: dict = field(default_factory=dict)
    saver: dict = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return bool(self.saver.get("done"))

    @property
    def in_flight(self) -> int:
        """Frames sent by the recorder not yet received by the saver (0 at the end, or frames were lost)."""
        return self.recorder.get("frames_sent", 0) - self.saver.get("frames_received", 0)

    @property
    def phase(self) -> str:
        return self.recorder.get("phase", "starting")

    @property
    def episode_number(self) -> int:
        """1-based; the count stops at num_episodes (after the last episode the recorder's index is past it)."""
        number = self.recorder.get("episode", 0) + 1
        total = self.recorder.get("num_episodes")
        return min(number, total) if isinstance(total, int) else number

    def line(self) -> str:
        r, s = self.recorder, self.saver
        phase = self.phase
        if phase == "done":
            saved = r.get("episodes_saved", 0)
            episode = f"done: {saved} episode{'' if saved == 1 else 's'} recorded"
        else:
            episode = f"episode {self.episode_number}/{r.get('num_episodes', '?')} "
            episode += f"frame {r.get('frame', 0)}/{r.get('episode_frames', '?')}" if phase == "recording" else phase
        return (f"{episode} | save queue {s.get('queue_depth', 0)} pending {s.get('pending', 0)} | "
                f"saved {s.get('completed', 0)} failed {s.get('failed', 0)} | "
                f"dropped {s.get('sequence_gaps', 0)} (in flight {max(self.in_flight, 0)})")

    @property
    def frames_lost(self) -> int:
        """Frames the recorder kept (episodes ended with save) that the saver neither committed nor
        kept in its spool for recovery."""
        s = self.saver
        return self.recorder.get("frames_kept", 0) - s.get("frames_committed", 0) - (s.get("frames_kept_in_spool") or 0)

    def problems(self) -> list[str]:
        """Why this session is not a success (empty: every recorded frame was committed)."""
        r, s = self.recorder, self.saver
        found = []
        if not s.get("done"):
            found.append("the saver never reported its end (it died or hung); what it took stays in its spool")
        found += [f"recorder: {e}" for e in r.get("errors", [])]
        found += [f"saver: {e}" for e in s.get("errors", [])]
        if s.get("fatal") and not s.get("errors"):
            found.append(f"saver: {s['fatal']}")
        if s.get("failed") and not s.get("errors"):
            found.append(f"saver: {s['failed']} episode saves failed ({s.get('last_error')})")
        if self.frames_lost and not found:
            found.append(f"{self.frames_lost} recorded frames were not committed")
        return found


class Console:
    """Drives one recording session through a connected dora node (or anything with next/send_output)."""

    def __init__(self, node, keys: KeySource, out: TextIO | None = None, interactive: bool = True,
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
        self._last_line = 0.0
        self._recorder_done_at: float | None = None

    def request_exit(self) -> None:
        """`e` or Ctrl-C: the recorder saves what it has and finishes; pending saves are drained."""
        if not self.exit_requested:
            self.exit_requested = True
            self._print("exit requested: finishing the episode and draining saves")
            self.node.send_output("key", encode_key("e"))

    def run(self) -> ConsoleState:
        while not self.state.finished and not self._saver_gone():
            event = self.node.next(timeout=0.05)
            if event is None:  # the dataflow has ended
                break
            if event["type"] == "INPUT":
                self._on_status(event["id"], event["value"])
            now = time.monotonic()
            if self.state.phase == "recording":
                self._on_recording_started()
                if hasattr(self.keys, "start"):
                    r = self.state.recorder
                    self.keys.start(now, take=(r.get("episode", 0), r.get("episodes_discarded", 0)))
            for key in self.keys.poll(now):
                if key == "e":
                    self.request_exit()
                else:
                    self._print(key_feedback(key, self.state))
                    self.node.send_output("key", encode_key(key))
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
        if self.state.recorder.get("phase") != "done":
            return False
        now = time.monotonic()
        self._recorder_done_at = self._recorder_done_at or now
        return now - self._recorder_done_at > SAVER_GONE_S

    def _on_status(self, input_id: str, value) -> None:
        try:
            status = decode_status(value)
        except MessageError as exc:
            self._print(f"ignored malformed {input_id}: {exc}")
            return
        if input_id == "recorder_status":
            if not self.state.recorder and status.get("phase") == "waiting_for_inputs":
                self.progress.step("recorder and saver are up; waiting for the first frame of every camera and arm")
            self.state.recorder = status
        elif input_id == "saver_status":
            self.state.saver = status
            if status.get("fatal") and not self.exit_requested:
                self._print(f"saver: {status['fatal']}")
                self.request_exit()  # nothing can be saved: stop recording instead of going on for nothing
            if status.get("draining") and status.get("pending") and not self._said_waiting:
                self._said_waiting = True
                self._print(f"Waiting for {status['pending']} pending saves...")

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
        """The end-of-run summary: recorded / handed over / committed / lost, from the saver's own figures."""
        s, r = self.state.saver, self.state.recorder
        self._print(self.state.line())
        if s.get("done"):
            self._print(f"Save stats: queued={s.get('queued', 0)} completed={s.get('completed', 0)} failed={s.get('failed', 0)}")
        self._print(f"frames recorded {r.get('frames_kept', 0)}, handed over {s.get('frames_received', 0)}, "
                    f"committed {s.get('frames_committed', 0)}, kept for recovery {s.get('frames_kept_in_spool') or 0}, "
                    f"dropped {self.state.frames_lost}, "
                    f"sequence gaps {s.get('sequence_gaps', 0)}, dataset {s.get('root')}")
        self._print(f"stream: duplicates {s.get('duplicates', 0)}, reordered {s.get('reordered', 0)}, rejected by the "
                    f"saver {s.get('rejected') or 0}, by the recorder {r.get('rejected') or 0}; episodes slower than "
                    f"real time {r.get('slow_episodes', 0)}")
        self._print(f"recorder: save response ms {r.get('save_response_ms', [])}, longest hand-over "
                    f"{r.get('send_max_ms')} ms, longest sample gap {r.get('sample_gap_max_ms')} ms, "
                    f"stale samples skipped {r.get('stale_skips', 0)}, samples paused for the saver "
                    f"{r.get('backpressure_skips', 0)}, input staleness {r.get('staleness')}")
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


def run_session(node, keys_context, progress: StartupProgress | None = None, dataset: str = "") -> ConsoleState:
    """Run the console until the saver is done; Ctrl-C once = `e` (drain), twice = give up."""
    with keys_context as keys:
        console = Console(node, keys, interactive=sys.stdout.isatty(), progress=progress, dataset=dataset)
        try:
            return console.run()
        except KeyboardInterrupt:
            console.request_exit()
            return console.run()
        finally:
            console.node = None  # leave the dataflow now, while the daemon still runs
