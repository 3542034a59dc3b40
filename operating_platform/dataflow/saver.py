"""Saver node logic: host the dataset writer and turn the recorder's episode stream into episodes.

Each frame goes straight to `ds.add_frame` (spooled to disk, video encoded live),
`end` calls `ds.save_episode()` (returns at once with the async saver),
`discard` calls `ds.clear_episode_buffer()`, and `finish` drains pending saves
and closes the dataset. Every message is numbered, so a lost one shows up as a
sequence gap in the status, which is published for the console and the recorder.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from operating_platform.dataset import LeRobotDataset, build_features
from operating_platform.dataset import format as fmt
from operating_platform.dataset.spool import SpoolWriteError

from .messages import EpisodeLayout, EpisodeMsg, MessageError, SeqTracker, decode_episode, encode_status
from .problems import ProblemLog
from .settings import env_bool, setting

logger = logging.getLogger(__name__)
Emit = Callable[[str, object, dict], None]
STATUS_INTERVAL_NS = 250_000_000
STORAGE_STATUS_KEYS = ("free_bytes", "minutes_left", "space_low", "frames_recoverable", "recoverable")


@dataclass
class SaverConfig:
    repo_id: str = "sim_demo"
    root: str = ""  # dataset directory; default data/<repo_id>
    fps: int = 30
    robot_type: str = "so101"
    use_async_save: bool = True
    async_save_queue_size: int = 10
    async_save_max_retries: int = 3
    async_save_timeout_s: float = 300.0
    batch_encoding_size: int = 1
    vcodec: str = fmt.DEFAULT_VIDEO_CODEC
    resume: bool = True  # append to an existing dataset at `root` (a new one is created otherwise)
    dataset_version: str = fmt.DEFAULT_CODEBASE_VERSION  # LeRobot format of a new dataset: v3.0 or v2.1

    @property
    def dataset_root(self) -> Path:
        """Absolute, so what the saver prints is where the data lands, whatever folder the reader is in."""
        return (Path(self.root) if self.root else Path("data") / self.repo_id).resolve()

    @classmethod
    def from_env(cls, env: dict[str, str] = os.environ) -> "SaverConfig":
        def get(name, cast, default):
            return setting(env, "saver", name, cast, default)

        return cls(
            repo_id=get("REPO_ID", str, cls.repo_id),
            root=get("DATASET_ROOT", str, ""),
            fps=get("FPS", int, 30),
            robot_type=get("ROBOT_TYPE", str, cls.robot_type),
            use_async_save=get("USE_ASYNC_SAVE", env_bool, True),
            async_save_queue_size=get("ASYNC_SAVE_QUEUE_SIZE", int, 10),
            async_save_max_retries=get("ASYNC_SAVE_MAX_RETRIES", int, 3),
            async_save_timeout_s=get("ASYNC_SAVE_TIMEOUT_S", float, 300.0),
            batch_encoding_size=get("BATCH_ENCODING_SIZE", int, 1),
            vcodec=get("VCODEC", str, cls.vcodec),
            resume=get("RESUME", env_bool, True),
            dataset_version=get("DATASET_VERSION", str, cls.dataset_version),
        )

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
    """Event-driven: `on_episode(value, metadata)` per message of the recorder's stream, `on_tick()` for status."""

    def __init__(self, open_dataset: Callable[[EpisodeLayout], LeRobotDataset], emit: Emit,
                 clock_ns: Callable[[], int] = time.monotonic_ns, say: Callable[[str], None] = print):
        self._open_dataset = open_dataset
        self._emit = emit
        self._clock_ns = clock_ns
        self._say = say
        self.ds: LeRobotDataset | None = None
        self.layout: EpisodeLayout | None = None
        self.task = ""
        self.episode: int | None = None  # session episode being received; None between episodes
        self.seq = SeqTracker()
        self.handled_seq = 0
        self.problems = ProblemLog("saver")
        self.frames_received = 0
        self.episodes_queued = 0
        self.episodes_discarded = 0
        self.frames_at_open = 0
        self.sync_failed = 0
        self.last_error: str | None = None
        self.fatal: str | None = None
        self.draining = False
        self.done = False
        self._closed_writer_status: dict | None = None  # the async saver's counters, kept past close()
        self._was_async = False
        self._last_status_ns = 0

    # ------------------------------------------------------------------ events

    def on_episode(self, value: object, metadata: dict | None) -> None:
        try:
            msg = decode_episode(value, metadata)
        except MessageError as exc:
            self.problems.report("episode", exc)
            return
        self.seq.see(msg.seq)
        try:
            if msg.kind == "frame":
                self._on_frame(msg)
            elif msg.kind == "begin":
                self._on_begin(msg)
            elif msg.kind == "end":
                self._on_end(msg)
            elif msg.kind == "discard":
                self._on_discard(msg)
            else:
                self.finish()
        finally:
            self.handled_seq = max(self.handled_seq, msg.seq)
        if msg.kind != "frame" or self._clock_ns() - self._last_status_ns >= STATUS_INTERVAL_NS:
            self.publish_status()

    def on_tick(self) -> None:
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
            self.frames_at_open = self.ds.num_frames
            self._say(f"[saver] recording into {self.ds.root} ({self.ds.num_episodes} episodes already there)")
        elif msg.layout != self.layout:
            self.problems.report("begin", f"episode {msg.episode_index} layout {msg.layout} differs from {self.layout}")
            self.episode = None
            return
        if self.ds.episode_buffer is not None:  # an episode that never got its end/discard
            self.problems.report("begin", f"episode {self.episode} had no end; its frames are discarded")
            self.ds.clear_episode_buffer()
        self.episode = msg.episode_index
        self.task = msg.task

    def _on_frame(self, msg: EpisodeMsg) -> None:
        if self.ds is None or msg.episode_index != self.episode:
            self.problems.report("frame", f"frame {msg.frame_index} of episode {msg.episode_index} outside a begun episode")
            return
        if msg.layout != self.layout:
            self.problems.report("frame", f"frame {msg.frame_index} layout differs from the episode's")
            return
        frame = {fmt.STATE_KEY: msg.state, fmt.ACTION_KEY: msg.action}
        frame.update({fmt.IMAGE_KEY_PREFIX + cam: img for cam, img in msg.images.items()})
        try:
            self.ds.add_frame(frame, task=self.task)
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
        try:
            index = self.ds.save_episode()
        except Exception as exc:  # synchronous commit failed: the episode's frames stay in the spool
            self.sync_failed += 1
            self.last_error = f"episode {msg.episode_index}: {exc}"
            self._say(f"[saver] ✗ save failed: {self.last_error}")
            return
        self.episodes_queued += 1
        self._say(f"[AsyncEpisodeSaver] ✓ Queued episode {index}" if self.ds.async_saver is not None
                  else f"[saver] ✓ Saved episode {index}")

    def _on_discard(self, msg: EpisodeMsg) -> None:
        if self.ds is not None:
            self.ds.clear_episode_buffer()
        self.episode = None
        self.episodes_discarded += 1

    def finish(self) -> None:
        """Drain every pending save, close the dataset, publish the final status."""
        if self.done:
            return
        self.draining = True
        pending = self._writer_status().get("pending_tasks", 0)
        if pending:
            self._say(f"Waiting for {pending} pending saves...")
        self.publish_status()
        if self.ds is not None:
            self.ds.wait_for_save_completion()
            self._closed_writer_status = self._writer_status()
            self._was_async = self.ds.async_saver is not None
            self.ds.close()
            self._closed_writer_status.update(self.ds.storage_status())  # what close() left in the spool
            self.fatal = self.fatal or self._closed_writer_status.get("saving_stopped")  # exit non-zero
        self.done = True
        s = self.status()
        self._say(f"Save stats: queued={s['queued']} completed={s['completed']} failed={s['failed']}")
        self._say(f"[saver] frames received {s['frames_received']}, committed {s['frames_committed']}, "
                  f"sequence gaps {s['sequence_gaps']}, rejected {s['rejected'] or 0}")
        if s["frames_recoverable"]:  # issue 10: not committed, kept in the spool, and how to get them back
            self._say(f"[saver] ✗ {s['frames_recoverable']} frames not committed, kept for recovery: "
                      f"{', '.join(s['recoverable'])} — opening the dataset again commits the saved episodes; "
                      f"incomplete ones: python scripts/recover_episodes.py {s['root']} --include-partial")
        self.publish_status()

    # ------------------------------------------------------------------ status

    def _writer_status(self) -> dict:
        if self._closed_writer_status is not None:
            return self._closed_writer_status
        return self.ds.get_async_save_status() if self.ds is not None else {}

    def status(self) -> dict:
        w = self._writer_status()
        is_async = self._was_async or (self.ds is not None and self.ds.async_saver is not None)
        committed = (self.ds.num_episodes if self.ds is not None else 0)
        return {
            "queue_depth": w.get("queue_size", 0),
            "pending": w.get("pending_tasks", 0),
            "queued": self.episodes_queued,
            "completed": w.get("total_completed", 0) if is_async else self.episodes_queued,
            "failed": w.get("total_failed", 0) + self.sync_failed,
            "retries": w.get("total_retries", 0),
            "last_error": w.get("last_error") or self.last_error,
            "fatal": self.fatal or w.get("saving_stopped"),  # a failed save holds every later one (issue 10)
            **{k: w.get(k) for k in STORAGE_STATUS_KEYS},
            "frames_received": self.frames_received,
            "frames_committed": (self.ds.num_frames - self.frames_at_open) if self.ds is not None else 0,
            "episodes_committed": committed,
            "episodes_discarded": self.episodes_discarded,
            "sequence_gaps": self.seq.gaps,
            "handled_seq": self.handled_seq,
            "rejected": dict(self.problems.counts),
            "draining": self.draining,
            "done": self.done,
            "root": str(self.ds.root) if self.ds is not None else None,
        }

    def publish_status(self) -> None:
        self._last_status_ns = self._clock_ns()
        self._emit("status", encode_status(self.status()), {})
