"""The recorder's note replayed into the dataset when no saver is left to take it.

A dead saver never replays the note the recorder wrote (stop_note.py), so
scripts/recover_episodes.py does, through `replay_note`. The saver may have taken
some of the note's messages before it died (acknowledgements lag), so frames join
the partial episode it was spooling from the first frame that spool does not hold;
an `end` commits that episode, a `discard` drops it as the recorder meant, a
`begin` starts a new one. What cannot be placed is named, never dropped silently.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from operating_platform.dataset import format as fmt
from operating_platform.dataset.spool import SPOOL_META

from .messages import EpisodeMsg, MessageError, decode_episode
from .stop_note import clear_stop_note, read_stop_note
from .timing import EpisodeTiming, record_timing


def dataset_frame(msg: EpisodeMsg) -> dict:
    """A `frame` message as the dataset's `add_frame` takes it."""
    frame = {fmt.STATE_KEY: msg.state, fmt.ACTION_KEY: msg.action}
    frame.update({fmt.IMAGE_KEY_PREFIX + cam: img for cam, img in msg.images.items()})
    return frame


def note_frames(root: Path | str) -> int | None:
    """Frames in the note left at `root`; None when there is none."""
    messages = read_stop_note(root)
    return None if messages is None else sum(1 for _, m in messages if m.get("kind") == "frame")


def replay_note(ds) -> list[str]:
    """Replay the note left at `ds.root` into the open dataset `ds` (opened without recovering partial
    episodes); one line per outcome. No episode is left open: one without `end` stays partial."""
    messages = read_stop_note(ds.root)
    if messages is None:
        return []
    replay = _Replay(ds)
    for value, metadata in sorted(messages, key=lambda m: m[1]["seq"]):
        try:
            msg = decode_episode(value, metadata)
        except MessageError as exc:
            replay.unreadable.append(f"message {metadata.get('seq')} ({exc})")
            continue
        replay.handle(msg, metadata)
    lines = replay.close()
    clear_stop_note(ds.root)  # last: a replay cut short is run again (frames already appended are skipped)
    return lines


class _Replay:
    def __init__(self, ds):
        self.ds = ds
        self.partial: Path | None = ds.partial_episodes[-1] if ds.partial_episodes else None  # the saver's, if any
        self.episode: int | None = None  # the recorder's episode the note is in
        self.begun = False  # its `begin` is in the note, its first frame not yet seen
        self.task = ""
        self.appended = 0
        self.held = 0  # frames of the note the spool already held
        self.unplaced: Counter[int] = Counter()
        self.unreadable: list[str] = []
        self.lines: list[str] = []

    def handle(self, msg: EpisodeMsg, metadata: dict) -> None:
        if msg.kind == "begin":
            self._set_aside(f"episode {self.episode} has no end in the note")
            self.episode, self.task, self.begun = msg.episode_index, msg.task, True
            return
        if msg.kind == "finish":
            return
        if self.episode is None and not self.begun:  # the note starts inside an episode: the saver's partial one
            self.episode = msg.episode_index
            self._resume_partial()
        if msg.episode_index != self.episode:
            self.unplaced[msg.episode_index] += msg.kind == "frame"
            return
        if msg.kind == "frame":
            self._frame(msg, metadata["stamp_ns"])
        elif msg.kind == "end":
            self._end(msg)
        elif msg.kind == "discard":
            buffer = self.ds.episode_buffer
            if buffer is not None:
                self.lines.append(f"episode {msg.episode_index}: discarded by the recorder (re-recorded), "
                                  f"its {buffer.num_frames} spooled frames are dropped")
                self.ds.clear_episode_buffer()
            self.episode = None

    def _frame(self, msg: EpisodeMsg, stamp_ns: int) -> None:
        if self.begun:  # the first frame after `begin`: the saver's partial spool holds the frames before it,
            self.begun = False  # or, for frame 0, was created after it was sampled
            if self.partial is not None and (msg.frame_index > 0 or read_created_ns(self.partial) >= stamp_ns):
                self._resume_partial()
        buffer = self.ds.episode_buffer
        have = buffer.num_frames if buffer is not None else 0
        if msg.frame_index < have:
            self.held += 1
        elif msg.frame_index > have or not self.task:  # frames before it are missing (appending would misnumber
            # the episode), or its task is unknown (a note without the episode's `begin`)
            self.unplaced[msg.episode_index] += 1
        else:
            self.ds.add_frame(dataset_frame(msg), task=self.task)
            self.appended += 1

    def _end(self, msg: EpisodeMsg) -> None:
        buffer, self.episode = self.ds.episode_buffer, None
        if buffer is None:
            return  # nothing of it waits here: the saver had saved it
        frames = buffer.num_frames
        index = self.ds.save_episode()
        if warning := record_timing(self.ds.root, index, EpisodeTiming.from_metadata(msg.timing)):
            self.lines.append(warning)
        self.lines.append(f"episode {msg.episode_index}: ended in the note; committed as episode {index} ({frames} frames)")

    def _resume_partial(self) -> None:
        if self.partial is None:
            return
        buffer = self.ds.resume_partial_episode(self.partial)
        self.partial = None
        self.task = self.task or (buffer.tasks[-1] if buffer.tasks else "")

    def _set_aside(self, why: str) -> None:
        frames = self.ds.episode_buffer.num_frames if self.ds.episode_buffer is not None else 0
        path = self.ds.set_aside_episode()
        if path is not None:
            self.lines.append(f"{why}: its {frames} frames stay partial in {path}")

    def close(self) -> list[str]:
        self._set_aside(f"episode {self.episode}: the note ends before its end")
        self.lines.insert(0, f"the recorder's note: {self.appended} frames appended, {self.held} already spooled")
        for episode, frames in sorted(self.unplaced.items()):
            if frames:
                self.lines.append(f"✗ {frames} frames of episode {episode} in the note have no spooled episode to join "
                                  "at their place (its spool is gone, or frames before them are missing): not committed")
        if self.unreadable:
            self.lines.append(f"✗ {len(self.unreadable)} messages of the note are unreadable: {'; '.join(self.unreadable)}")
        return self.lines


def read_created_ns(spool: Path) -> int:
    return int(fmt.read_json(spool / SPOOL_META).get("created_ns", 0))
