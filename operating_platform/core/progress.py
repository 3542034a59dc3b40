"""Start-up progress: each step dora and the nodes go through, with the time since the console started.

Bringing up a coordinator, a daemon and seven Python nodes takes 10-30 s on a busy
machine; the operator sees which step it is on and for how long, never a blank screen.
On a terminal the current step's line keeps counting in place; otherwise (a log, a
pipe) each step is one line.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

TICK_S = 0.2


class StartupProgress:
    def __init__(self, out: TextIO | None = None, interactive: bool | None = None, started_at: float | None = None):
        self._out = out
        self.interactive = self.out.isatty() if interactive is None else interactive
        self.started_at = time.monotonic() if started_at is None else started_at
        self._step: str | None = None
        self._step_started = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    @property
    def out(self) -> TextIO:
        """The given stream, else whatever sys.stdout is when written."""
        return self._out or sys.stdout

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def stamp(self, text: str) -> str:
        return f"[{self.elapsed():5.1f} s] {text}"

    def step(self, text: str) -> None:
        """A new step begins (the previous one is done)."""
        with self._lock:
            self._finish_step()
            self._step, self._step_started = text, self.elapsed()
            self._write()
        if self.interactive and self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def done(self) -> None:
        """Start-up is over: stop counting; the console's own status line takes over."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        with self._lock:
            self._finish_step()

    def _finish_step(self) -> None:
        """On a terminal, the finished step's line keeps how long it took."""
        if self.interactive and self._step is not None:
            self.out.write(f"\r\x1b[2K[{self._step_started:5.1f} s] {self._step} ({self.elapsed() - self._step_started:.1f} s)\n")
            self.out.flush()
        self._step = None

    def _write(self) -> None:
        if self.interactive:  # the running step counts up in place (from the first tick on)
            running = self.elapsed() - self._step_started
            counter = f" {running:.1f} s" if running >= TICK_S else ""
            self.out.write(f"\r\x1b[2K[{self._step_started:5.1f} s] {self._step} ...{counter}")
        else:
            self.out.write(self.stamp(self._step) + "\n")
        self.out.flush()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            with self._lock:
                if self._step is not None:
                    self._write()

    def __enter__(self) -> "StartupProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.done()
