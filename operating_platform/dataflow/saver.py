"""Saver node logic: host the dataset writer and turn the recorder's episode stream into episodes.

Each frame goes straight to `ds.add_frame` (spooled to disk, video encoded live),
`end` calls `ds.save_episode()` (returns at once with the async saver),
`discard` calls `ds.clear_episode_buffer()`, and `finish` drains pending saves
and closes the dataset. Every message is numbered: the stream is put back in
order (duplicates dropped, swaps reordered, losses counted as gaps) and the
status's `handled_seq` acknowledges what the saver has durably taken, so the
recorder can hold back (credits) and never exits before `finish` is acknowledged.

How the session ends decides what happens to an episode still open:
`finish` (after the recorder's `end`): nothing is open; dora's STOP (Ctrl-C on
`dora run`, `dora stop`): the episode in progress is saved, since the recorder
cannot send anything after STOP; the recorder's stream closing mid-episode (it
crashed, or gave up on this saver while it hung: then its note is taken first): an
error, the frames stay in the spool and the message names the command that
commits them. Whatever recorded frame is not committed is an error.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from operating_platform.dataset import LeRobotDataset, build_features
from operating_platform.dataset import format as fmt
from operating_platform.dataset.spool import SpoolWriteError
from operating_platform.dataset.writer import StorageStatus
from operating_platform.saving import SaveQueueStatus

from .messages import EpisodeLayout, EpisodeMsg, InOrder, MessageError, SaverStatus, decode_episode, encode_status
from .note_replay import dataset_frame, replay_note
from .problems import ProblemLog
from .settings import DEFAULTS, EnvSettings
from .stop_note import take_stop_note
from .summary import recover_command, saver_lines, waiting_line
from .timing import EpisodeTiming, record_timing

Emit = Callable[[str, object, dict], None]
STATUS_INTERVAL_NS = 250_000_000
ACK_EVERY = 4  # frames handled between two acknowledgements (status) to the recorder
REORDER_WINDOW = 16  # messages held back waiting for one that is missing before them
LINGER_NS = 10_000_000_000  # after `finish`, wait this long for the recorder to take the ack and exit
DRAIN_POLL_S = 0.5  # while draining, the status (pending saves, liveness) is published this often
STOP_NOTE_WAIT_S = 3.0  # after STOP, how long the saver waits for the recorder's note (dora kills at 15 s)


@dataclass
class SaverConfig:
    repo_id: str = DEFAULTS.repo_id
    root: str = DEFAULTS.root
    fps: int = DEFAULTS.fps
    robot_type: str = DEFAULTS.robot_type
    use_async_save: bool = DEFAULTS.use_async_save
    async_save_queue_size: int = DEFAULTS.async_save_queue_size
    async_save_max_retries: int = DEFAULTS.async_save_max_retries
    async_save_timeout_s: float = DEFAULTS.async_save_timeout_s
    batch_encoding_size: int = DEFAULTS.batch_encoding_size
    vcodec: str = DEFAULTS.vcodec
    resume: bool = DEFAULTS.resume
    dataset_version: str = DEFAULTS.dataset_version
    saver_nice: int = DEFAULTS.saver_nice

    @property
    def dataset_root(self) -> Path:
        """Absolute, so what the saver prints is where the data lands, whatever folder the reader is in."""
        return (Path(self.root) if self.root else Path("data") / self.repo_id).resolve()

    @classmethod
    def from_env(cls, env: dict[str, str] = os.environ) -> "SaverConfig":
        return cls(**EnvSettings(env, "saver").shared_with(cls))

    def open_dataset(self, layout: EpisodeLayout) -> LeRobotDataset:
        """Create the dataset for `layout`, or resume the one at `root` (shapes must match)."""
        features = build_features(layout.joint_names, layout.cameras)
        options = dict(
            repo_id=self.repo_id, fps=self.fps, features=features, robot_type=self.robot_type,
            use_async_saver=self.use_async_save, batch_encoding_size=self.batch_encoding_size,
            vcodec=self.vcodec, async_save_queue_size=self.async_save_queue_size,
            async_save_max_retries=self.async_save_max_retries, async_save_timeout=self.async_save_timeout_s,
        )
        root = self.dataset_root
        if self.resume and (root / fmt.INFO_PATH).exists():
            return LeRobotDataset.open(root, codebase_version=self.dataset_version, **options)
        return LeRobotDataset.create(root=root, codebase_version=self.dataset_version, **options)


class Saver:
    """Event-driven: `on_input(id, value, metadata)` per event, `on_closed(id)`, `finish(reason)` on STOP."""

    def __init__(self, open_dataset: Callable[[EpisodeLayout], LeRobotDataset], emit: Emit,
                 clock_ns: Callable[[], int] = time.monotonic_ns, say: Callable[[str], None] = print,
                 drain_timeout_s: float = 600.0):
        self._open_dataset = open_dataset
        self._emit = emit
        self._clock_ns = clock_ns
        self._say = say
        self.drain_timeout_s = drain_timeout_s
        self.ds: LeRobotDataset | None = None
        self.layout: EpisodeLayout | None = None
        self.task = ""
        self.episode: int | None = None  # session episode being received; None between episodes
        self.stream = InOrder(REORDER_WINDOW)
        self.problems = ProblemLog("saver")
        self.frames_received = 0
        self.frames_discarded = 0  # frames of re-recorded (or abandoned) episodes: not meant to be committed
        self.frames_partial = 0  # frames left in the spool of an episode the recorder never ended
        self.frames_failed = 0  # frames of episodes whose synchronous save failed (they stay in the spool)
        self.frames_from_stop_note = 0  # frames that never reached this saver (STOP, or it hung), taken from the note
        self.episodes_queued = 0
        self.episodes_discarded = 0
        self.episodes_at_open = 0
        self.frames_at_open = 0
        self.sync_failed = 0
        self.last_error: str | None = None
        self.fatal: str | None = None
        self.errors: list[str] = []  # the session's outcome: empty = every received frame committed
        self.finish_reason: str | None = None
        self.draining = False
        self.done = False
        self.recorder_gone = False
        self._done_ns = 0
        self._held_at_tick: int | None = None
        self._acked = 0
        self._closed_writer: tuple[SaveQueueStatus, StorageStatus] | None = None  # the writer's figures, kept past close()
        self._was_async = False
        self._last_status_ns = 0

    @property
    def should_exit(self) -> bool:
        """Done, and the recorder has taken the final acknowledgement (or had long enough to)."""
        return self.done and (self.recorder_gone or self.finish_reason == "stop"
                              or self._clock_ns() - self._done_ns >= LINGER_NS)

    @property
    def handled_seq(self) -> int:
        return self.stream.handled

    # ------------------------------------------------------------------ events

    def on_input(self, input_id: str, value: object, metadata: dict | None) -> None:
        if input_id == "episode":
            self.on_episode(value, metadata)
        elif input_id == "tick":
            self.on_tick()
        else:
            self.problems.report("unknown input", f"input id {input_id!r} is not part of the saver's contract")

    def on_closed(self, input_id: str) -> None:
        if input_id == "episode":
            self.recorder_gone = True
            self.finish("closed")  # no-op after `finish`; otherwise the recorder crashed

    def on_episode(self, value: object, metadata: dict | None) -> None:
        try:
            msg = decode_episode(value, metadata)
        except MessageError as exc:
            self.problems.report("malformed", exc)
            return
        before = self.stream.duplicates
        released = self.stream.push(msg.seq, msg)
        if self.stream.duplicates > before:
            self.problems.report("duplicate", f"message {msg.seq} ({msg.kind}) arrived twice; the copy is dropped")
        self._handle_all(released)

    def on_tick(self) -> None:
        # A message still missing a tick later is lost: handle what waited for it.
        if self.stream.held and self._held_at_tick == self.stream.next_seq:
            self._handle_all(self.stream.give_up())
        self._held_at_tick = self.stream.next_seq if self.stream.held else None
        self.publish_status()

    def _handle_all(self, messages: list[EpisodeMsg]) -> None:
        control = False
        for msg in messages:
            control |= msg.kind != "frame"
            if msg.kind == "frame":
                self._on_frame(msg)
            elif msg.kind == "begin":
                self._on_begin(msg)
            elif msg.kind == "end":
                self._on_end(msg)
            elif msg.kind == "discard":
                self._on_discard(msg)
            else:
                self.finish("finish")
        if self.done:
            return
        due = self.handled_seq - self._acked >= ACK_EVERY or self._clock_ns() - self._last_status_ns >= STATUS_INTERVAL_NS
        if messages and (control or due):
            self.publish_status()

    def _on_begin(self, msg: EpisodeMsg) -> None:
        if self.fatal:
            return
        if self.ds is None:
            try:
                self.ds = self._open_dataset(msg.layout)
            except Exception as exc:  # a dataset that cannot be opened stops recording with its reason
                self.fatal = f"cannot open the dataset: {exc}"
                self._say(f"[saver] ✗ {self.fatal}")
                return
            self.layout = msg.layout
            if not self._replay_earlier_note():
                return
            self.frames_at_open = self.ds.num_frames
            self.episodes_at_open = self.ds.num_episodes
            self._say(f"[saver] recording into {self.ds.root} ({self.ds.num_episodes} episodes already there)")
        elif msg.layout != self.layout:
            self.problems.report("begin", f"episode {msg.episode_index} layout {msg.layout} differs from {self.layout}")
            self.episode = None
            return
        if self.ds.episode_buffer is not None:  # an episode that never got its end/discard
            self.problems.report("begin", f"episode {self.episode} had no end; its frames are discarded")
            self.frames_discarded += self.ds.episode_buffer.num_frames
            self.ds.clear_episode_buffer()
        self.episode = msg.episode_index
        self.task = msg.task

    def _replay_earlier_note(self) -> bool:
        """A note an earlier session's recorder left (its saver died) joins that session's episodes before
        this one starts, so this session's STOP never takes it for its own; False (fatal) if it cannot."""
        try:
            lines = replay_note(self.ds)
            self.ds.wait_for_save_completion(timeout=self.drain_timeout_s)
        except Exception as exc:  # noqa: BLE001 - the note stays for recover_episodes.py; nothing is recorded over it
            self.fatal = (f"the note an earlier session's recorder left in {self.ds.root} cannot be replayed ({exc}); "
                          f"commit it first with: {recover_command(self.ds.root)}")
            self._say(f"[saver] ✗ {self.fatal}")
            return False
        for line in lines:
            self._say(f"[saver] {'✗' if line.startswith('✗') else '⚠'} an earlier session's note: {line.lstrip('✗ ')}")
        return True

    def _on_frame(self, msg: EpisodeMsg) -> None:
        if self.ds is None or msg.episode_index != self.episode:
            self.problems.report("frame", f"frame {msg.frame_index} of episode {msg.episode_index} outside a begun episode")
            return
        if msg.layout != self.layout:
            self.problems.report("frame", f"frame {msg.frame_index} layout differs from the episode's")
            return
        have = self.ds.episode_buffer.num_frames if self.ds.episode_buffer is not None else 0
        if msg.frame_index < have:
            self.problems.report("duplicate frame", f"episode {msg.episode_index} frame {msg.frame_index} is already stored")
            return
        try:
            self.ds.add_frame(dataset_frame(msg), task=self.task)
        except SpoolWriteError as exc:  # storage fault (issue 10): said once; `fatal` stops the recorder
            self.problems.counts["frame (storage fault)"] += 1
            if self.fatal is None:
                self.fatal = str(exc)
                self._say(f"[saver] ✗ {self.fatal}")
            return
        except Exception as exc:  # the writer refused this frame: counted and reported, the node lives on
            self.problems.report("frame", f"episode {msg.episode_index} frame {msg.frame_index}: {exc}")
            return
        self.frames_received += 1

    def _on_end(self, msg: EpisodeMsg) -> None:
        if self.ds is None or msg.episode_index != self.episode or self.ds.episode_buffer is None:
            self.problems.report("end", f"end of episode {msg.episode_index} that has no frames here")
            return
        self.episode = None
        self._save_episode(f"episode {msg.episode_index}", EpisodeTiming.from_metadata(msg.timing))

    def _save_episode(self, what: str, timing: EpisodeTiming | None = None) -> None:
        frames = self.ds.episode_buffer.num_frames
        try:
            index = self.ds.save_episode()
        except Exception as exc:  # synchronous commit failed: the episode's frames stay in the spool
            self.sync_failed += 1
            self.frames_failed += frames
            self.last_error = f"{what}: {exc}"
            self._say(f"[saver] ✗ save failed: {self.last_error}")
            return
        self.episodes_queued += 1
        if warning := record_timing(self.ds.root, index, timing):
            self._say(f"[saver] ⚠ {warning}")
        self._say(f"[AsyncEpisodeSaver] ✓ Queued episode {index}" if self.ds.async_saver is not None
                  else f"[saver] ✓ Saved episode {index}")

    def _on_discard(self, msg: EpisodeMsg) -> None:
        if self.ds is not None and self.ds.episode_buffer is not None:
            self.frames_discarded += self.ds.episode_buffer.num_frames
            self.ds.clear_episode_buffer()
        self.episode = None
        self.episodes_discarded += 1

    # ------------------------------------------------------------------ the end of the session

    def finish(self, reason: str = "finish") -> None:
        """End the session: settle the open episode by `reason`, drain pending saves, close, judge.

        reason: "finish" (the recorder's last message), "stop" (dora's STOP), "closed" (the
        recorder's stream closed without `finish`).
        """
        if self.done or self.draining:
            return
        self.draining = True
        self.finish_reason = reason
        if reason in ("stop", "closed"):  # closed: a hung saver woke to find the recorder gone, its note written
            self._take_stop_note(reason, STOP_NOTE_WAIT_S if reason == "stop" else 0.0)
        self._handle_all(self.stream.give_up())  # what waited for a lost message is handled now
        self._settle_open_episode(reason)
        self._drain()
        self.done = True
        self._done_ns = self._clock_ns()
        self._judge()
        for line in saver_lines(self.status()):
            self._say(line)
        self.publish_status()

    def _settle_open_episode(self, reason: str) -> None:
        buffer = self.ds.episode_buffer if self.ds is not None else None
        if buffer is None or buffer.num_frames == 0:
            return
        what = f"episode {self.episode} in progress ({buffer.num_frames} frames)"
        self.episode = None
        if reason == "stop":  # the recorder cannot send `end` after STOP: what it recorded is kept
            self._say(f"[saver] stop: saving {what}; if this process is killed first, commit it with: "
                      f"{recover_command(self.ds.root)}")
            self._save_episode(what)
            return
        self.frames_partial += buffer.num_frames
        self.errors.append(f"the recorder's stream ended ({reason}) in the middle of {what}: its frames stay in "
                           f"{buffer.path}; commit them with: {recover_command(self.ds.root)}")

    def _take_stop_note(self, reason: str, timeout_s: float) -> None:
        """Messages the recorder sent that never reached this saver (dropped at STOP, or sent while it
        hung) come from its note on disk."""
        if self.ds is None:
            return
        messages = take_stop_note(self.ds.root, timeout_s)
        if messages is None:
            if reason == "stop":  # a recorder that crashed writes no note: its frames stop at what arrived
                self.errors.append(f"the recorder left no note of its unacknowledged messages within {timeout_s:g} s "
                                   "of STOP: whether every recorded frame arrived cannot be confirmed")
            return
        before = self.frames_received
        for value, metadata in sorted(messages, key=lambda m: m[1]["seq"]):
            if metadata["seq"] > self.handled_seq and metadata.get("kind") != "finish":
                self.on_episode(value, metadata)
        self.frames_from_stop_note = self.frames_received - before
        if self.frames_from_stop_note:
            self._say(f"[saver] {reason}: {self.frames_from_stop_note} frames the recorder could not hand over "
                      "taken from its note")

    def _drain(self) -> None:
        if self.ds is None:
            return
        pending = self._writer_status()[0].pending_tasks
        if pending:
            self._say(waiting_line(pending))
        deadline = time.monotonic() + self.drain_timeout_s
        while not self.ds.wait_for_save_completion(timeout=DRAIN_POLL_S):
            self.publish_status()  # the recorder sees the saver alive while it drains
            if time.monotonic() > deadline:
                self.errors.append(f"saves still pending after {self.drain_timeout_s:.0f} s; their episodes stay "
                                   f"in the spool and are committed by: {recover_command(self.ds.root)}")
                break
        queue_status = self.ds.save_queue_status()
        self._was_async = self.ds.async_saver is not None
        self.ds.close(timeout=DRAIN_POLL_S)
        self._closed_writer = (queue_status, self.ds.storage_status())  # with what close() left in the spool
        self.fatal = self.fatal or self._closed_writer[1].saving_stopped  # exit non-zero

    def _judge(self) -> None:
        s = self.status()
        if self.fatal:
            self.errors.insert(0, self.fatal)
        if s.sequence_gaps:
            self.errors.append(f"{s.sequence_gaps} messages of the recorder's stream never arrived (sequence gaps)")
        if s.failed:
            self.errors.append(f"{s.failed} episode saves failed ({s.last_error}); their frames stay in the "
                               f"spool; commit them with: {recover_command(s.root)}")
        if s.pack_error:  # v3.0: committed into the store, not yet in LeRobot's files
            self.errors.append(s.pack_error)
        lost = s.frames_received - s.frames_committed - s.frames_discarded - s.frames_kept_in_spool
        if lost:
            self.errors.append(f"{lost} received frames were not committed (received {s.frames_received}, "
                               f"committed {s.frames_committed}, discarded {s.frames_discarded})")

    # ------------------------------------------------------------------ status

    def _writer_status(self) -> tuple[SaveQueueStatus, StorageStatus]:
        if self._closed_writer is not None:
            return self._closed_writer
        if self.ds is None:
            return SaveQueueStatus(), StorageStatus()
        return self.ds.save_queue_status(), self.ds.storage_status()

    def status(self) -> SaverStatus:
        q, storage = self._writer_status()
        is_async = self._was_async or (self.ds is not None and self.ds.async_saver is not None)
        return SaverStatus(
            queue_depth=q.queue_size,
            pending=q.pending_tasks,
            queued=self.episodes_queued,
            completed=q.total_completed if is_async else self.episodes_queued,
            failed=q.total_failed + self.sync_failed,
            retries=q.total_retries,
            last_error=q.last_error or self.last_error,
            fatal=self.fatal or storage.saving_stopped,  # a failed save holds every later one (issue 10)
            free_bytes=storage.free_bytes,
            minutes_left=storage.minutes_left,
            space_low=storage.space_low,
            frames_recoverable=storage.frames_recoverable,
            recoverable=list(storage.recoverable),
            frames_received=self.frames_received,
            frames_committed=(self.ds.num_frames - self.frames_at_open) if self.ds is not None else 0,
            frames_discarded=self.frames_discarded,
            frames_partial=self.frames_partial,
            frames_failed=self.frames_failed,
            # What stays in the spool, for recovery: the writer's own count once it knows (held and
            # incomplete episodes), else what this node saw left there (partial or failed episodes).
            frames_kept_in_spool=max(self.frames_partial + self.frames_failed, storage.frames_recoverable),
            pack_error=storage.pack_error,
            frames_from_stop_note=self.frames_from_stop_note,
            episodes_committed=(self.ds.num_episodes - self.episodes_at_open) if self.ds is not None else 0,
            episodes_discarded=self.episodes_discarded,
            sequence_gaps=self.stream.gaps,
            duplicates=self.stream.duplicates,
            reordered=self.stream.reordered,
            handled_seq=self.handled_seq,
            rejected=dict(self.problems.counts),
            errors=list(self.errors),
            finish_reason=self.finish_reason,
            draining=self.draining,
            done=self.done,
            root=str(self.ds.root) if self.ds is not None else None,
        )

    def publish_status(self) -> None:
        self._last_status_ns = self._clock_ns()
        self._acked = self.handled_seq
        self._emit("status", encode_status(self.status()), {})
