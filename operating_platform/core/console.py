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

STATUS_PERIOD_S = 0.2
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

    def line(self) -> str:
        r, s = self.recorder, self.saver
        phase = r.get("phase", "starting")
        if phase == "done":
            episode = f"{r.get('episodes_saved', 0)} episodes recorded"
        else:
            episode = f"episode {r.get('episode', 0) + 1}/{r.get('num_episodes', '?')}"
        frames = f"frame {r.get('frame', 0)}/{r.get('episode_frames', '?')}" if phase == "recording" else phase
        return (f"{episode} {frames} | save queue {s.get('queue_depth', 0)} pending {s.get('pending', 0)} | "
                f"saved {s.get('completed', 0)} failed {s.get('failed', 0)} | "
                f"dropped {s.get('sequence_gaps', 0)} (in flight {max(self.in_flight, 0)})")

    @property
    def frames_lost(self) -> int:
        """Frames the recorder kept (episodes ended with save) that the saver did not commit."""
        return self.recorder.get("frames_kept", 0) - self.saver.get("frames_committed", 0)

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

    def __init__(self, node, keys: KeySource, out: TextIO | None = None, interactive: bool = True):
        self.node = node
        self.keys = keys
        self.out = out or sys.stdout
        self.interactive = interactive
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
            if self.state.recorder.get("phase") == "recording" and hasattr(self.keys, "start"):
                self.keys.start(now)
            for key in self.keys.poll(now):
                if key == "e":
                    self.request_exit()
                else:
                    self.node.send_output("key", encode_key(key))
            self._show_progress(now)
        self._finish_line()
        return self.state

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
        if now - self._last_line < STATUS_PERIOD_S:
            return
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
                    f"committed {s.get('frames_committed', 0)}, dropped {self.state.frames_lost}, "
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


def run_session(node, keys_context) -> ConsoleState:
    """Run the console until the saver is done; Ctrl-C once = `e` (drain), twice = give up."""
    with keys_context as keys:
        console = Console(node, keys, interactive=sys.stdout.isatty())
        try:
            return console.run()
        except KeyboardInterrupt:
            console.request_exit()
            return console.run()
        finally:
            console.node = None  # leave the dataflow now, while the daemon still runs
