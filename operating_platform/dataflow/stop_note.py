"""The recorder's hand-over of what the saver has not acknowledged, passed through the dataset directory.

Two moments need it. dora's STOP ends every node's event stream at once (measured
with dora 1.1): what the recorder sent after the saver's stream ended is dropped by
the daemon (`dropping recorder/episode to saver: node has no daemon event stream`).
And a saver that dies or hangs never acknowledges what was in flight or still in the
recorder's outbox. Either way the recorder writes every message of its episode
stream the saver has not acknowledged into `.spool/recorder_stop/`. The saver
replays the ones that never reached it, before settling the episode in progress (at
STOP, or when it wakes to find the recorder gone); when the saver is dead,
scripts/recover_episodes.py replays the note into the spooled partial episode
(note_replay.py). Nothing recorded is lost; what cannot be confirmed is named.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

NOTE_DIR = ".spool/recorder_stop"
NOTE_FILE = "note.json"
POLL_S = 0.1


def write_stop_note(root: Path | str, messages: list[tuple[object, dict]]) -> None:
    """`messages`: (value, metadata) of the episode stream the saver has not acknowledged."""
    folder = Path(root) / NOTE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for value, metadata in messages:
        payload = value.to_numpy(zero_copy_only=False) if len(value) else np.empty(0, np.uint8)
        payload.tofile(folder / f"{metadata['seq']}.bin")
    tmp = folder / (NOTE_FILE + ".tmp")
    tmp.write_text(json.dumps([metadata for _, metadata in messages]))
    os.replace(tmp, folder / NOTE_FILE)  # last: the saver never reads half a note


def clear_stop_note(root: Path | str) -> None:
    shutil.rmtree(Path(root) / NOTE_DIR, ignore_errors=True)
    try:
        (Path(root) / NOTE_DIR).parent.rmdir()  # the spool, when nothing else waits there
    except OSError:
        pass


def read_stop_note(root: Path | str) -> list[tuple[pa.Array, dict]] | None:
    """The note's messages (value, metadata) in the order written; None when there is no note."""
    folder = Path(root) / NOTE_DIR
    if not (folder / NOTE_FILE).exists():
        return None
    return [(pa.array(np.fromfile(folder / f"{m['seq']}.bin", np.uint8)), m)
            for m in json.loads((folder / NOTE_FILE).read_text())]


def take_stop_note(root: Path | str, timeout_s: float) -> list[tuple[pa.Array, dict]] | None:
    """The recorder's unacknowledged messages, waiting up to `timeout_s` for its note (its STOP may come later)."""
    deadline = time.monotonic() + timeout_s
    while (messages := read_stop_note(root)) is None:
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_S)
    clear_stop_note(root)
    return messages
