"""Key sources for a keyboard: the operator's terminal, or a script for tests and demos.

dora-spawned nodes cannot read the terminal (not in its foreground process group), so
the terminal program (`python nodes/keyboard.py`, or the console) reads the keys and hands
them to the `keyboard` node over its socket (key_relay.py). The terminal is
put in cbreak mode (keys arrive one at a time, not echoed, Ctrl-C still signals)
and restored on every way out: normal exit, exception, or signal.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import termios
import tty
from dataclasses import dataclass

from .messages import KEYS


class KeyScriptError(ValueError):
    """A --record.keys / RECORD_KEYS script is malformed; the text names the item."""


@dataclass(frozen=True)
class ScriptedKey:
    delay_s: float  # after the previous key (the first: after recording has started)
    key: str


def parse_key_script(script: str) -> list[ScriptedKey]:
    """`"n@4,r@2,e@3"`: press n 4 s into the first take, r 2 s into the next, e 3 s into the one after.

    A bare key (`"e"`) means no delay.
    """
    keys = []
    for i, item in enumerate(p.strip() for p in script.split(",")):
        if not item:
            continue
        key, _, delay = item.partition("@")
        if key not in KEYS:
            raise KeyScriptError(f"key script item {i + 1} {item!r}: unknown key {key!r} (keys: {', '.join(KEYS)})")
        try:
            delay_s = float(delay) if delay else 0.0
        except ValueError:
            raise KeyScriptError(f"key script item {i + 1} {item!r}: delay {delay!r} is not a number of seconds") from None
        if delay_s < 0:
            raise KeyScriptError(f"key script item {i + 1} {item!r}: delay must be >= 0")
        keys.append(ScriptedKey(delay_s, key))
    return keys


class ScriptedKeys:
    """Replays a key script against what the recorder is doing, not against the wall clock.

    The first key's delay counts from when recording starts; after a key that ends the take
    being recorded (n saves it, r discards it) the next key's delay counts from when the next
    take starts recording, however long saving, the reset pause or a loaded machine took.
    """

    ENDS_TAKE = ("n", "r")

    def __init__(self, script: list[ScriptedKey]):
        self._pending = list(script)
        self._due: float | None = None
        self._take = None  # the take the clock runs in
        self._ended: list = []  # takes a key has ended

    def start(self, now: float, take=0) -> None:
        """Recording is on; `take` names the take being recorded (e.g. (episode, discarded count))."""
        if self._due is None and self._pending and take not in self._ended:
            self._due, self._take = now + self._pending[0].delay_s, take

    @property
    def started(self) -> bool:
        return self._due is not None

    @property
    def exhausted(self) -> bool:
        return not self._pending

    def poll(self, now: float) -> list[str]:
        pressed = []
        while self._pending and self._due is not None and now >= self._due:
            key = self._pending.pop(0).key
            pressed.append(key)
            if key in self.ENDS_TAKE:
                self._ended.append(self._take)
                self._due = None  # wait for the next take
            else:
                self._due = (self._due + self._pending[0].delay_s) if self._pending else None
        return pressed


def raise_keyboard_interrupt(signum, frame):
    """Signal handler: unwind like Ctrl-C, so `finally`/`with` clean-up runs."""
    raise KeyboardInterrupt


class NoKeys:
    """No keyboard (stdin is not a terminal): episodes run on their timers."""

    def poll(self, now: float = 0.0) -> list[str]:
        return []


class TerminalKeys:
    """Context manager: keys from a terminal in cbreak mode, restored on exit whatever happens."""

    def __init__(self, stream=None):
        self._stream = stream or sys.stdin
        self._fd = self._stream.fileno()
        self._saved: list | None = None
        self._handlers: dict = {}

    def __enter__(self) -> "TerminalKeys":
        self._saved = termios.tcgetattr(self._fd)
        # SIGTERM/SIGHUP would otherwise end the process without unwinding, leaving the terminal
        # without echo; as KeyboardInterrupt they unwind through __exit__ like Ctrl-C does.
        self._handlers = {sig: signal.signal(sig, raise_keyboard_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
        tty.setcbreak(self._fd, termios.TCSANOW)
        return self

    def restore(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._saved = None
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        self._handlers = {}

    def __exit__(self, *exc) -> None:
        self.restore()

    def poll(self, now: float = 0.0) -> list[str]:
        """Keys typed since the last poll (never blocks)."""
        ready, _, _ = select.select([self._fd], [], [], 0)
        if not ready:
            return []
        data = os.read(self._fd, 64).decode(errors="replace")
        return [ch.lower() for ch in data if ch.lower() in KEYS]


def terminal_or_no_keys(stream=None):
    """A context giving TerminalKeys when `stream` (stdin) is a terminal, else NoKeys."""
    stream = stream or sys.stdin
    return TerminalKeys(stream) if stream.isatty() else contextlib.nullcontext(NoKeys())
