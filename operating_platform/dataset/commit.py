"""Committing one spooled episode into the dataset: steps that may each fail and be run again.

Why steps: a save fails at any point (disk full, a read-only or permission-less meta/, a
timeout) and is retried, or finished by the next open. So every step rewrites what it owns
whole (same input, same result), nothing in memory changes until info.json — the commit
point — is written, and whether a spool is in the dataset is read from the dataset itself:
a committed episode holds a spool when its parquet has the spool's frame count and the very
same recorded values, and its image stats are those of the spool's frames (the content is the
id, so the files stay exactly what LeRobot writes). A spool is deleted only once that check passes (`release`).

Steps of a LeRobot v2.1 commit of episode `ep` (= the dataset's committed count):
  stage_videos     encode each camera into .staging/<spool id>/ (kept across retries once whole)
  stage_parquet    the episode table
  place_files      remove files of episodes >= ep an earlier attempt left, rename the staged ones in
  write_metadata   tasks.jsonl, episodes.jsonl, episodes_stats.jsonl with this episode's rows
  write_info       info.json with the new totals: the commit point
Another on-disk format plugs in as another class with the same interface (`run()` returning the
new `CommittedState`, `find_committed`, `release`), set as `LeRobotDataset.episode_commit`.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow.parquet as pq

from . import format as fmt
from .info import DatasetInfo
from .parquet import episode_table, episode_timestamps, write_table_durably
from .recovery import remove_uncommitted_episode_files
from .spool import EpisodeBuffer
from .stats import same_image_stats, vector_stats
from .video import VideoEncodeError, encode_video, probe_video_info, video_frame_count

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommittedState:
    """The dataset's metadata after a commit; the writer adopts it once it is on disk."""

    info: DatasetInfo
    episodes: list[dict]
    episodes_stats: list[dict]
    tasks: dict[str, int]


class V21EpisodeCommit:
    """The commit of one sealed spool as the next episode of a v2.1 dataset (see the module docstring)."""

    def __init__(self, ds, buffer: EpisodeBuffer, deadline: Callable[[], None] | None = None):
        self.ds, self.buffer, self.deadline = ds, buffer, deadline
        self.root: Path = ds.root
        self.ep: int = ds.num_episodes
        self.n: int = buffer.num_frames
        self.camera_keys = list(ds._layout.camera_shapes)
        self.staging: Path = ds._staging(buffer)
        self.staged: dict[str, Path] = {}
        self.stats: dict = {}
        self.tasks = dict(ds._tasks)
        for task in buffer.tasks:
            self.tasks.setdefault(task, len(self.tasks))

    def steps(self) -> list[Callable[[], None]]:
        return [self.stage_videos, self.stage_parquet, self.place_files, self.write_metadata, self.write_info]

    def run(self) -> CommittedState:
        for step in self.steps():
            step()
        return self.result

    # What recovery asks of a format: which spools are in the dataset, and may one go.
    @staticmethod
    def find_committed(root: Path, info: DatasetInfo, buffers: list[EpisodeBuffer]) -> dict[Path, int]:
        return committed_spools(root, info, buffers)

    @staticmethod
    def release(root: Path, info: DatasetInfo, ep: int, buffer: EpisodeBuffer, staging: Path) -> None:
        release(root, info, ep, buffer, staging)

    # ------------------------------------------------------------------ steps

    def stage_videos(self) -> None:
        self.staging.mkdir(parents=True, exist_ok=True)
        for key in self.camera_keys:
            self.staged[self.ds.info.video_path(key, self.ep)] = self._staged_video(key)
            self.stats[key] = self.buffer.image_stats(key)  # after the live encode is done: its frames' stats

    def _staged_video(self, key: str) -> Path:
        path = self.staging / f"{key}.mp4"
        live = self.buffer.live_encoders.pop(key, None)  # usable once
        if live is not None:
            if live.finish() and live.frames_encoded == self.n and path.exists():
                return path
            logger.warning("live encode of %s unusable (%s); re-encoding from the spool", key, live.error)
        elif video_frame_count(path) == self.n:
            return path  # whole from an earlier attempt
        n = encode_video(self.buffer.follow(key), path, self.ds.fps, self.ds.encoding, self.deadline)  # stats kept too
        if n != self.n:
            raise VideoEncodeError(f"{path}: encoded {n} frames, expected {self.n}")
        return path

    def stage_parquet(self) -> None:
        vectors, local_task_ids = self.buffer.read_vectors()
        task_index = np.asarray([self.tasks[t] for t in self.buffer.tasks], dtype=np.int64)[local_task_ids]
        first_index = self.ds.num_frames
        columns = {
            **vectors,
            "timestamp": episode_timestamps(self.n, self.ds.fps),
            "frame_index": np.arange(self.n, dtype=np.int64),
            "episode_index": np.full(self.n, self.ep, dtype=np.int64),
            "index": np.arange(first_index, first_index + self.n, dtype=np.int64),
            "task_index": task_index,
        }
        table = episode_table(columns, self.ds.features)
        path = self.staging / "data.parquet"
        write_table_durably(table, path)
        self.staged[self.ds.info.data_path(self.ep)] = path
        self.stats.update({k: vector_stats(v) for k, v in columns.items()})
        if self.deadline is not None:
            self.deadline()

    def place_files(self) -> None:
        remove_uncommitted_episode_files(self.root, self.ep)  # an earlier attempt's, of this or a later index
        for rel, src in self.staged.items():
            dst = self.root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            src.replace(dst)
            fmt.fsync_dir(dst.parent)

    def write_metadata(self) -> None:
        ds, ep = self.ds, self.ep
        self.episodes = [r for r in ds._episodes if r["episode_index"] < ep]
        self.episodes.append({"episode_index": ep, "tasks": list(self.buffer.tasks), "length": self.n})
        self.episodes_stats = [r for r in ds._episodes_stats if r["episode_index"] < ep]
        self.episodes_stats.append({"episode_index": ep, "stats": self.stats})
        if self.tasks != ds._tasks:
            fmt.write_jsonl_atomic(self.root / fmt.TASKS_PATH, [{"task_index": i, "task": t} for t, i in self.tasks.items()])
        fmt.write_jsonl_atomic(self.root / fmt.EPISODES_PATH, self.episodes)
        fmt.write_jsonl_atomic(self.root / fmt.EPISODES_STATS_PATH, self.episodes_stats)

    def write_info(self) -> None:
        ep, info = self.ep, self.ds.info
        features = dict(info.features)
        for key in self.camera_keys:
            if features[key].info is None:  # the block comes from the first encoded video
                features[key] = replace(features[key], info=probe_video_info(self.root / info.video_path(key, ep)))
        info = info.with_features(features).with_totals(ep + 1, self.ds.num_frames + self.n, len(self.tasks))
        try:
            info.write(self.root)
        except OSError:
            if _on_disk(self.root / fmt.INFO_PATH) != info.to_json():  # e.g. renamed in, then the directory fsync failed
                raise
        self.result = CommittedState(info, self.episodes, self.episodes_stats, self.tasks)


def _on_disk(path: Path):
    try:
        return fmt.read_json(path)
    except (OSError, fmt.DatasetFormatError):
        return None


# ---------------------------------------------------------------------- is a spool in the dataset?


def holds_spool(root: Path, info: DatasetInfo, ep: int, buffer: EpisodeBuffer) -> bool:
    """Episode `ep` is committed and holds exactly `buffer`'s frames: the count, the recorded values, every file."""
    if not 0 <= ep < info.total_episodes:
        return False
    path = root / info.data_path(ep)
    if not path.exists() or pq.read_metadata(path).num_rows != buffer.num_frames:
        return False
    committed = pq.read_table(path, columns=list(buffer.layout.vector_shapes))
    vectors, _ = buffer.read_vectors()
    if not all(np.array_equal(np.array(committed.column(k).to_pylist(), dtype=np.float32), v) for k, v in vectors.items()):
        return False
    if not all((root / info.video_path(k, ep)).exists() for k in buffer.layout.camera_shapes):
        return False
    # Pixels: the committed image stats were computed from these very spool frames (joints alone
    # can repeat, e.g. an arm standing still), so equal stats tell the cameras' content apart too.
    row = next((r for r in fmt.read_jsonl(root / fmt.EPISODES_STATS_PATH) if r.get("episode_index") == ep), None)
    if row is None:
        return False
    return all(same_image_stats(row["stats"].get(key), buffer.image_stats(key)) for key in buffer.layout.camera_shapes)


def committed_spools(root: Path, info: DatasetInfo, buffers: list[EpisodeBuffer]) -> dict[Path, int]:
    """{spool path: episode} for the spools (in recording order) the dataset verifiably holds.

    Spools are committed in order as the dataset's next episode, so those already in it are the
    last episodes, in the same order: matched walking both backwards, one comparison per spool.
    """
    found, ep = {}, info.total_episodes - 1
    for buffer in reversed(buffers):
        if ep >= 0 and buffer.num_frames > 0 and holds_spool(root, info, ep, buffer):
            found[buffer.path] = ep
            ep -= 1
    return found


def release(root: Path, info: DatasetInfo, ep: int, buffer: EpisodeBuffer, staging: Path) -> None:
    """Delete a spool, only once episode `ep` verifiably holds its frames."""
    if not holds_spool(root, info, ep, buffer):
        raise RuntimeError(f"episode {ep} does not hold the frames of {buffer.path}; the spool is kept")
    shutil.rmtree(buffer.path, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
