"""LeRobotDataset: record frames into a LeRobot dataset without making the operator wait.

This is the common per-episode commit protocol; a v2.1 dataset is exactly what it writes,
a v3.0 one (v30/recording.py) uses it as its durable per-episode store.

Life of an episode:
  add_frame()     appends to the episode's spool on disk (and feeds the live video encoders)
  save_episode()  seals the spool, gives it the next index and hands it over — to the
                  AsyncEpisodeSaver (returns at once; it calls back `commit_saved_episode` and
                  `abandon_saved_episode` on its thread) or, in sync mode, commits it before returning
  commit          steps in commit.py: videos + parquet staged, renamed into data/ and videos/,
                  the JSONL metadata, then info.json, the commit point; each step can fail and
                  be run again, and in-memory state follows only once info.json is written.
On open, everything past info.json's totals is rolled back, and each spool is either
verifiably in the dataset (then deleted) or committed again — a crash loses nothing saved.

Order policy when saving fails: episodes are committed strictly in recording order. Once a
save has failed after its retries (or the spool cannot be written), `saving_stopped` says why,
every later episode waits behind it in the spool with the index it was given, and the next
open commits them all in order. A full disk or a missing permission does not fix itself, so
the dataflow stops recording on `saving_stopped` rather than pile up episodes it cannot save.
"""

from __future__ import annotations

import errno
import itertools
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from operating_platform.saving import (
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_SAVE_TIMEOUT_S,
    AsyncEpisodeSaver,
    EpisodeHeld,
    SaveQueueStatus,
)

from . import format as fmt
from . import space
from .format import DatasetFormatError
from .commit import V21EpisodeCommit
from .info import DatasetInfo, feature_signature, features_from_json, video_keys
from .recovery import repair_dataset
from .spool import EpisodeBuffer, SpoolLayout, SpoolWriteError, load_spooled_episode, spooled_episode_dirs
from .video import EncoderThread, VideoEncoding

logger = logging.getLogger(__name__)

_spool_counter = itertools.count()
RECOVER_COMMAND = "python scripts/recover_episodes.py {root} --include-partial (or --discard-partial to drop it)"


class SavingStoppedError(EpisodeHeld):
    """An episode was kept in the spool, not committed: an earlier save failed (see `saving_stopped`)."""


class EpisodeIndexError(RuntimeError):
    """An episode would be committed under another index than the one it was handed over with."""


@dataclass(frozen=True)
class StorageStatus:
    """Free space, minutes of recording it holds, and what is kept in the spool instead of committed."""

    free_bytes: int | None = None
    minutes_left: float | None = None
    space_low: bool = False
    saving_stopped: str | None = None  # why nothing more is committed this session
    episodes_held: int = 0
    episodes_incomplete: int = 0
    frames_recoverable: int = 0
    recoverable: list[str] = field(default_factory=list)
    pack_error: str | None = None  # v3.0: committed episodes not yet packed into LeRobot's files


class LeRobotDataset:
    """A LeRobot v2.1 dataset being recorded. Create with `create()`, resume with `open()`."""

    episode_commit = V21EpisodeCommit  # the commit steps of the on-disk format (see commit.py)

    def __init__(
        self,
        root: Path,
        info: DatasetInfo,
        *,
        repo_id: str | None = None,
        use_async_saver: bool = True,
        batch_encoding_size: int = 1,
        encoding: VideoEncoding = VideoEncoding(),
        async_save_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        async_save_max_retries: int = DEFAULT_MAX_RETRIES,
        async_save_timeout: float = DEFAULT_SAVE_TIMEOUT_S,
        live_encoding: bool = True,
    ):
        if batch_encoding_size < 1:
            raise ValueError(f"batch_encoding_size must be >= 1, got {batch_encoding_size}")
        self.root = Path(root)
        self.dataset_root = self.root  # what commands shown to users name (a v3.0 dataset's root, not its store)
        self.repo_id = repo_id or self.root.name
        self.info = info
        self.encoding = encoding
        self.batch_encoding_size = batch_encoding_size
        self.live_encoding = live_encoding and batch_encoding_size == 1
        self.async_saver = None
        self._async_settings = dict(
            max_queue_size=async_save_queue_size, save_timeout=async_save_timeout, max_retries=async_save_max_retries
        )
        self._episodes = fmt.read_jsonl(self.root / fmt.EPISODES_PATH)
        self._episodes_stats = fmt.read_jsonl(self.root / fmt.EPISODES_STATS_PATH)
        self._tasks = {row["task"]: row["task_index"] for row in fmt.read_jsonl(self.root / fmt.TASKS_PATH)}
        self._awaiting_batch: list[EpisodeBuffer] = []
        self._next_index = info.total_episodes  # advanced per hand-over; held episodes keep theirs
        self.saving_stopped: str | None = None  # why nothing more is committed this session
        self.held_episodes: list[EpisodeBuffer] = []  # sealed, waiting in the spool for the next open
        self.incomplete_episodes: list[EpisodeBuffer] = []  # a write failed mid-episode: partial spools
        self.partial_episodes: list[Path] = []
        self._warned_low_space = False
        self._space_estimate: tuple[int, space.SpaceEstimate] | None = None
        self.episode_buffer: EpisodeBuffer | None = None
        self._live_encoder_threads: dict[str, EncoderThread] = {}
        if cameras := info.video_keys:
            encoding.check_available()
        self._layout = SpoolLayout(
            vector_shapes={k: self.features[k].width for k in info.vector_keys},
            camera_shapes={k: self.features[k].shape for k in cameras},
        )
        self._reserve = space.SpaceReserve(self.root / fmt.SPOOL_DIR / space.RESERVE_FILE,
                                           space.reserve_bytes(self.space_estimate(), self.fps))
        if use_async_saver:
            self.start_async_saver()

    # ------------------------------------------------------------------ construction

    @classmethod
    def create(
        cls,
        repo_id: str,
        root: str | Path | None = None,
        fps: int = 30,
        features: dict | None = None,
        robot_type: str | None = None,
        use_async_saver: bool = True,
        batch_encoding_size: int = 1,
        vcodec: str = fmt.DEFAULT_VIDEO_CODEC,
        chunks_size: int = fmt.DEFAULT_CHUNK_SIZE,
        codebase_version: str = fmt.DEFAULT_CODEBASE_VERSION,
        **options: Any,
    ) -> "LeRobotDataset":
        """A new, empty dataset at `root` (default data/<repo_id>), LeRobot v3.0 or v2.1.

        `options`: pix_fmt, g, crf, preset (video), async_save_queue_size,
        async_save_max_retries, async_save_timeout, live_encoding;
        v3.0 also data_files_size_in_mb, video_files_size_in_mb.
        """
        fmt.check_codebase_version(codebase_version, "create: codebase_version")
        root = Path(root) if root is not None else Path("data") / repo_id
        if features is None:
            raise ValueError("create: features is required (see build_features)")
        if not isinstance(fps, int) or fps <= 0:
            raise ValueError(f"create: fps must be a positive integer, got {fps!r}")
        if (root / fmt.INFO_PATH).exists():
            raise FileExistsError(f"{root} already holds a dataset; open it with LeRobotDataset.open (--record.resume=true)")
        if root.exists() and any(root.iterdir()):
            raise FileExistsError(f"{root} exists and is not empty; choose another root")
        features = {**features, **{k: dict(v) for k, v in fmt.DEFAULT_FEATURES.items() if k not in features}}
        if strings := [k for k, ft in features_from_json(features, "create: features").items() if ft.dtype == "string"]:
            raise DatasetFormatError(f"create: string features {strings} cannot be recorded (frames hold numbers and images)")
        if codebase_version == fmt.V30:  # per-episode commits into a hidden store, packed into v3.0 files
            from .v30.recording import create_v30

            return create_v30(cls, repo_id, root, fps, features, robot_type, chunks_size, use_async_saver,
                              vcodec=vcodec, batch_encoding_size=batch_encoding_size, **options)
        info = DatasetInfo.new(fmt.CODEBASE_VERSION, fps, features, robot_type, chunks_size)
        root.mkdir(parents=True, exist_ok=True)
        info.write(root)
        return cls(root, info, repo_id=repo_id, encoding=_pop_encoding(options, vcodec),
                   use_async_saver=use_async_saver, batch_encoding_size=batch_encoding_size, **options)

    @classmethod
    def open(
        cls,
        root: str | Path,
        repo_id: str | None = None,
        fps: int | None = None,
        features: dict | None = None,
        robot_type: str | None = None,
        use_async_saver: bool = True,
        batch_encoding_size: int = 1,
        vcodec: str = fmt.DEFAULT_VIDEO_CODEC,
        recover_partial: bool = False,
        codebase_version: str | None = None,
        **options: Any,
    ) -> "LeRobotDataset":
        """Resume recording into an existing dataset, repairing what a crash left behind.

        fps/features/robot_type, when given, must match the dataset: appending
        episodes of another shape would make it unreadable, so it is refused.
        `recover_partial` also commits episodes a crash interrupted while recording.
        `codebase_version`, when given, must be the dataset's.
        """
        root = Path(root)
        info = DatasetInfo.load(root)
        on_disk = info.codebase_version
        if codebase_version is not None and codebase_version != on_disk:
            fmt.check_codebase_version(codebase_version, "open: codebase_version")
            raise DatasetFormatError(
                f"cannot resume {root}: it is a LeRobot {on_disk} dataset, {codebase_version} was requested "
                f"(append in its format with --record.dataset_version={on_disk} / DATASET_VERSION={on_disk}, or convert "
                f"it first: python scripts/convert_dataset.py --to {codebase_version} {root} NEW_ROOT)")
        if on_disk == fmt.V30:
            from .v30.recording import open_v30

            return open_v30(cls, root, repo_id=repo_id, fps=fps, features=features, robot_type=robot_type,
                            use_async_saver=use_async_saver, batch_encoding_size=batch_encoding_size, vcodec=vcodec,
                            recover_partial=recover_partial, **options)
        _check_resume_matches(root, info, fps, features, robot_type)
        repair_dataset(root, info)
        ds = cls(root, info, repo_id=repo_id, encoding=_pop_encoding(options, vcodec), use_async_saver=False,
                 batch_encoding_size=1, **options)
        ds._recover_spooled_episodes(recover_partial)
        ds.batch_encoding_size = batch_encoding_size
        ds.live_encoding = ds.live_encoding and batch_encoding_size == 1
        if use_async_saver:
            ds.start_async_saver()
        return ds

    resume = open

    # ------------------------------------------------------------------ properties

    @property
    def meta(self) -> DatasetInfo:
        return self.info

    @property
    def features(self) -> dict:
        return self.info.features

    @property
    def fps(self) -> int:
        return self.info.fps

    @property
    def num_episodes(self) -> int:
        """Episodes committed to disk."""
        return self.info.total_episodes

    @property
    def num_frames(self) -> int:
        return self.info.total_frames

    @property
    def next_episode_index(self) -> int:
        """Index the episode being recorded will get (if every earlier save succeeds)."""
        return self._next_index

    # ------------------------------------------------------------------ recording

    def add_frame(self, frame: dict, task: str | None = None) -> None:
        """Append one frame to the current episode (timestamps are set on the 1/fps grid)."""
        task = task if task is not None else frame.get("task")
        try:
            if self.episode_buffer is None:
                self.episode_buffer = self._new_episode_buffer()
            self.episode_buffer.add_frame(frame, task)
        except SpoolWriteError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT) or not self._reserve.release():
                self._storage_fault(e)
            try:  # the reserve takes the frames still in flight
                if self.episode_buffer is None:
                    self.episode_buffer = self._new_episode_buffer()
                else:
                    self.episode_buffer.resume_after_fault()
                self.episode_buffer.add_frame(frame, task)
            except SpoolWriteError as again:
                self._storage_fault(again)
            self._stop_saving_for_space(e)

    def _stop_saving_for_space(self, e: SpoolWriteError) -> None:
        needed = self.space_estimate().episode_peak_bytes(max([1, *(r["length"] for r in self._episodes[-20:])]))
        self.saving_stopped = self.saving_stopped or (
            f"cannot write {e.filename or e.spool}: {e.strerror} — recording stopped; about {space.megabytes(needed)} "
            f"free is needed at {self.root} for an episode; every frame recorded is kept (the episode in progress in "
            f"{self.episode_buffer.path}); once space is freed, open the dataset again to commit the saved episodes "
            f"and keep the incomplete one with: {RECOVER_COMMAND.format(root=self.dataset_root)}")
        logger.error("%s", self.saving_stopped)

    def _new_episode_buffer(self) -> EpisodeBuffer:
        self._reserve.ensure()
        spool_id = f"{time.time_ns():020d}-{next(_spool_counter):06d}"
        buffer = EpisodeBuffer.create(self.root / fmt.SPOOL_DIR / spool_id, self._layout, self.fps)
        if self.live_encoding:  # each camera encoded as it is recorded (its image stats kept on the way)
            for key in self._layout.camera_shapes:
                if key not in self._live_encoder_threads:
                    self._live_encoder_threads[key] = EncoderThread(key)
                path = self._staging(buffer) / f"{key}.mp4"
                buffer.live_encoders[key] = self._live_encoder_threads[key].submit(buffer.follow(key), path, self.fps,
                                                                                   self.encoding)
        return buffer

    def clear_episode_buffer(self) -> None:
        """Discard the episode being recorded (re-record): it leaves no trace on disk."""
        if self.episode_buffer is not None:
            self.episode_buffer.discard()
            for enc in self.episode_buffer.live_encoders.values():
                enc.finish()
            shutil.rmtree(self._staging(self.episode_buffer), ignore_errors=True)
            self.episode_buffer = None

    def resume_partial_episode(self, path: Path) -> EpisodeBuffer:
        """Make a partial episode left in the spool the current one again, so the frames that never
        reached it can be appended (the recorder's note, dataflow/note_replay.py)."""
        path = Path(path)
        if self.episode_buffer is not None:
            raise ValueError(f"resume_partial_episode: episode {self.episode_buffer.path} is being recorded")
        if path not in self.partial_episodes:
            raise ValueError(f"resume_partial_episode: {path} is not a partial episode of this dataset")
        self.episode_buffer = load_spooled_episode(path)
        self.partial_episodes.remove(path)
        return self.episode_buffer

    def set_aside_episode(self) -> Path | None:
        """Leave the episode being recorded in the spool, partial (recover_episodes.py keeps or drops it)."""
        buffer = self.episode_buffer
        if buffer is None or buffer.num_frames == 0:
            self.clear_episode_buffer()
            return None
        self.episode_buffer = None
        buffer.abandon()
        for enc in buffer.live_encoders.values():
            enc.finish()
        shutil.rmtree(self._staging(buffer), ignore_errors=True)
        self.partial_episodes.append(buffer.path)
        return buffer.path

    def end_episode(self) -> EpisodeBuffer:
        """Seal the current episode and take ownership of it (for AsyncEpisodeSaver.submit_episode)."""
        buffer = self.episode_buffer
        if buffer is None and self.incomplete_episodes:
            raise SavingStoppedError(f"save_episode: the episode was left incomplete by a write fault, its frames are "
                                     f"kept for recovery ({self.saving_stopped})")
        if buffer is None or buffer.num_frames == 0:
            raise ValueError("save_episode: the episode has no frames (call add_frame first)")
        try:
            buffer.end()
        except SpoolWriteError as e:
            self._storage_fault(e)
        self.episode_buffer = None  # the caller can no longer reach the handed-over buffer
        self._next_index += 1
        return buffer

    def save_episode(self) -> int:
        """End the current episode and save it; returns its (expected) episode index.

        With the async saver running this only seals the spool and queues it (ms);
        otherwise it blocks until the episode is committed.
        """
        index = self.next_episode_index
        buffer = self.end_episode()
        if self.async_saver is not None and self.async_saver.submit_episode(buffer, index):
            return index
        try:
            self.commit_saved_episode(buffer, index)
        except SavingStoppedError:
            raise
        except Exception as e:
            self.abandon_saved_episode(buffer, f"{type(e).__name__}: {e}", index)
            raise
        return index

    def _storage_fault(self, e: SpoolWriteError):
        """The spool cannot be written: keep the frames, mark the episode incomplete, stop saving, raise one line."""
        buffer = self.episode_buffer
        if buffer is not None:
            buffer.abandon()
            for enc in buffer.live_encoders.values():
                enc.finish()
            buffer.live_encoders.clear()
            shutil.rmtree(self._staging(buffer), ignore_errors=True)
            self.incomplete_episodes.append(buffer)
            self.episode_buffer = None  # a new episode starts in a new spool; this one is never sealed
        est = self.space_estimate()
        frames = max([e.frames_kept, *(r["length"] for r in self._episodes[-20:])])
        needed = est.episode_peak_bytes(frames) + sum(b.num_frames for b in self.held_episodes) * est.encoded_bytes_per_frame
        e.advice = (f"; recording stopped — about {space.megabytes(needed)} free is needed at {self.root} "
                    f"({space.megabytes(space.free_bytes(self.root))} free now); once space is freed or write "
                    f"permission restored, open the dataset again to commit the saved episodes and keep the "
                    f"incomplete one with: {RECOVER_COMMAND.format(root=self.dataset_root)}")
        self.saving_stopped = self.saving_stopped or str(e)
        logger.error("%s", e)
        raise e

    # ------------------------------------------------------------------ async API (reference names)

    def start_async_saver(self) -> None:
        if self.async_saver is None or not self.async_saver.is_running:
            self.async_saver = AsyncEpisodeSaver(self.commit_saved_episode, self.abandon_saved_episode,
                                                 **self._async_settings)

    def stop_async_saver(self, wait: bool = True, timeout: float | None = None) -> None:
        if self.async_saver is not None:
            self.async_saver.stop(wait=wait, timeout=timeout)
            self.async_saver = None

    def enable_async_saving(self, max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE, save_timeout: float = DEFAULT_SAVE_TIMEOUT_S,
                            max_retries: int | None = None) -> None:
        self._async_settings.update(max_queue_size=max_queue_size, save_timeout=save_timeout)
        if max_retries is not None:
            self._async_settings["max_retries"] = max_retries
        self.start_async_saver()

    def disable_async_saving(self, wait_for_completion: bool = True, timeout: float | None = None) -> None:
        self.stop_async_saver(wait=wait_for_completion, timeout=timeout)

    def save_episode_async(self, episode_buffer: EpisodeBuffer | None = None) -> bool:
        """Queue the current episode; False (episode untouched) when no saver is running."""
        if self.async_saver is None or not self.async_saver.is_running:
            return False
        if episode_buffer is not None and episode_buffer is not self.episode_buffer:
            raise ValueError("save_episode_async: episode_buffer must be this dataset's current episode buffer")
        index = self.next_episode_index
        return self.async_saver.submit_episode(self.end_episode(), index)

    def save_queue_status(self) -> SaveQueueStatus:
        return self.async_saver.status() if self.async_saver is not None else SaveQueueStatus()

    def get_async_save_status(self) -> dict:
        return {**asdict(self.save_queue_status()), **asdict(self.storage_status())}

    def space_estimate(self) -> space.SpaceEstimate:
        """Measured again only when an episode was committed (the status asks 4 times a second)."""
        if self._space_estimate is None or self._space_estimate[0] != self.num_episodes:
            cameras = {k: shape[:2] for k, shape in self._layout.camera_shapes.items()}
            est = space.estimate(cameras, self._layout.record_floats, self.encoding.vcodec, self.root)
            self._space_estimate = (self.num_episodes, est)
        return self._space_estimate[1]

    def storage_status(self) -> StorageStatus:
        """Free space, minutes of recording it holds, and whatever is kept in the spool instead of committed."""
        try:
            free = space.free_bytes(self.root)
        except OSError:
            free = None
        minutes = None
        if free is not None:
            reserve = max([1, *(r["length"] for r in self._episodes[-20:])])
            if self.episode_buffer is not None:
                reserve = max(reserve, self.episode_buffer.num_frames)
            minutes = round(self.space_estimate().minutes_left(free, self.fps, reserve), 1)
        low = minutes is not None and minutes < space.LOW_SPACE_MINUTES
        if low and not self._warned_low_space:
            logger.warning("%s is low on disk space: %s free, about %.1f minutes of recording left",
                           self.root, space.megabytes(free), minutes)
        self._warned_low_space = low
        kept = [*self.held_episodes, *self.incomplete_episodes]
        return StorageStatus(
            free_bytes=free,
            minutes_left=minutes,
            space_low=low,
            saving_stopped=self.saving_stopped,
            episodes_held=len(self.held_episodes),
            episodes_incomplete=len(self.incomplete_episodes),
            frames_recoverable=sum(b.num_frames for b in kept),
            recoverable=[f"{b.path} ({b.num_frames} frames{'' if b.ended else ', incomplete'})" for b in kept],
        )

    def wait_for_save_completion(self, timeout: float | None = None) -> bool:
        return self.async_saver.wait_for_completion(timeout) if self.async_saver is not None else True

    wait_for_async_saves = wait_for_save_completion

    def get_async_save_results(self) -> list[dict]:
        if self.async_saver is None:
            return []
        return [r.to_dict() for r in self.async_saver.get_results()]

    def close(self, timeout: float | None = None) -> None:
        """Drain pending saves, encode leftover batched episodes, stop the saver."""
        self.stop_async_saver(wait=True, timeout=timeout)
        if self.saving_stopped:
            self._hold_awaiting_batch()
        else:
            self._commit_awaiting_batch()
        if self.episode_buffer is not None:
            if self.episode_buffer.num_frames == 0:
                self.clear_episode_buffer()
            else:
                logger.warning(
                    "episode in progress (%d frames) was not saved; its frames stay in %s — "
                    "recover with: python scripts/recover_episodes.py %s --include-partial",
                    self.episode_buffer.num_frames, self.episode_buffer.path, self.dataset_root,
                )
                self.episode_buffer.abandon()
                self.incomplete_episodes.append(self.episode_buffer)
                self.episode_buffer = None
        for thread in self._live_encoder_threads.values():
            thread.stop()
        self._live_encoder_threads.clear()
        self._reserve.release()
        for work_dir in (fmt.STAGING_DIR, fmt.SPOOL_DIR):
            try:
                (self.root / work_dir).rmdir()  # only when empty: what is left there is recoverable
            except OSError:
                pass
        if self.saving_stopped:
            kept = self.storage_status()
            logger.error(
                "%s: saving stopped (%s); %d frames are not in the dataset but kept in the spool: %s — the next open "
                "of the dataset commits the saved episodes%s",
                self.root, self.saving_stopped, kept.frames_recoverable, ", ".join(kept.recoverable),
                f"; keep the incomplete one with: {RECOVER_COMMAND.format(root=self.dataset_root)}"
                if self.incomplete_episodes else "",
            )

    finalize = close

    def __enter__(self) -> "LeRobotDataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ committing

    def commit_saved_episode(self, buffer: EpisodeBuffer, index: int | None = None,
                             deadline: Callable[[], None] | None = None) -> None:
        """Commit a sealed episode as episode `index`, or park it until its encoding batch is full
        (the saver's worker calls this). An `index` that is not the dataset's next raises EpisodeIndexError.

        Raises SavingStoppedError, keeping the episode in the spool, once an earlier save has failed.
        """
        if self.saving_stopped:
            self._hold(buffer)
            raise SavingStoppedError(
                f"kept in {buffer.path} ({buffer.num_frames} frames) behind the failed save; the next open of "
                f"{self.root} commits it (saving stopped: {self.saving_stopped})"
            )
        if index is not None:
            batch = self._awaiting_batch
            expected = self.num_episodes + (batch.index(buffer) if buffer in batch else len(batch))
            if index != expected:
                raise EpisodeIndexError(f"{buffer.path} was handed over as episode {index} but would be committed as "
                                        f"episode {expected}; it is kept in the spool")
        if buffer not in self._awaiting_batch:
            self._awaiting_batch.append(buffer)
        if len(self._awaiting_batch) >= self.batch_encoding_size:
            self._commit_awaiting_batch(deadline)

    def _commit_awaiting_batch(self, deadline: Callable[[], None] | None = None) -> None:
        while self._awaiting_batch:
            self._commit(self._awaiting_batch[0], deadline)
            self._awaiting_batch.pop(0)

    def abandon_saved_episode(self, buffer: EpisodeBuffer, error: str = "save failed", index: int | None = None) -> None:
        """After the last retry: stop saving, keep this spool and every later one for the next open."""
        self.saving_stopped = self.saving_stopped or (
            f"episode {index if index is not None else '?'} could not be saved: {error}")
        self._hold(buffer)
        self._hold_awaiting_batch()

    def _hold(self, buffer: EpisodeBuffer) -> None:
        if buffer in self._awaiting_batch:
            self._awaiting_batch.remove(buffer)
        for enc in buffer.live_encoders.values():
            enc.finish()
        buffer.live_encoders.clear()
        shutil.rmtree(self._staging(buffer), ignore_errors=True)
        if buffer not in self.held_episodes:
            self.held_episodes.append(buffer)

    def _hold_awaiting_batch(self) -> None:
        while self._awaiting_batch:
            self._hold(self._awaiting_batch[0])

    def _staging(self, buffer: EpisodeBuffer) -> Path:
        return self.root / fmt.STAGING_DIR / buffer.spool_id

    def _commit(self, buffer: EpisodeBuffer, deadline: Callable[[], None] | None = None) -> None:
        ep = self.num_episodes
        state = self.episode_commit(self, buffer, deadline).run()
        self.info, self._episodes, self._episodes_stats, self._tasks = (
            state.info, state.episodes, state.episodes_stats, state.tasks)
        try:
            self.episode_commit.release(self.root, self.info, ep, buffer, self._staging(buffer))
        except Exception as e:  # noqa: BLE001 - committed; the kept spool is checked again on the next open
            logger.error("episode %d committed, but its spool %s is kept: %s", ep, buffer.path, e)
        logger.info("episode %d committed (%d frames) in %s", ep, buffer.num_frames, self.root)

    # ------------------------------------------------------------------ recovery

    def _recover_spooled_episodes(self, recover_partial: bool) -> None:
        """Commit, in recording order, every spool the dataset does not verifiably hold."""
        partial = []
        buffers = [load_spooled_episode(path) for path in spooled_episode_dirs(self.root / fmt.SPOOL_DIR)]
        committed = self.episode_commit.find_committed(self.root, self.info, buffers)
        for buffer in buffers:
            path = buffer.path
            if buffer.num_frames == 0:
                shutil.rmtree(path, ignore_errors=True)  # holds no frame
                continue
            if path in committed:
                logger.info("spool %s is episode %d of the dataset; removing it", path.name, committed[path])
                shutil.rmtree(path)
                continue
            if not buffer.ended and not recover_partial:
                partial.append(buffer)
                continue
            if self.saving_stopped:
                self.held_episodes.append(buffer)
                continue
            if not buffer.ended:
                buffer.end()
            logger.warning("recovering spooled episode %s (%d frames) as episode %d", path.name, buffer.num_frames,
                           self.num_episodes)
            try:
                self._commit(buffer)
            except Exception as e:  # noqa: BLE001 - the dataset opens; this and later spools wait for the next open
                self.saving_stopped = f"spooled episode {path} could not be committed: {type(e).__name__}: {e}"
                logger.error("%s", self.saving_stopped)
                self.held_episodes.append(buffer)
        if partial:
            listing = ", ".join(f"{b.path} ({b.num_frames} frames)" for b in partial)
            logger.warning(
                "%d incomplete episode(s) kept in the spool (an interrupted recording or a failed write): %s — "
                "keep them with: %s",
                len(partial), listing, RECOVER_COMMAND.format(root=self.dataset_root),
            )
        self.partial_episodes = [b.path for b in partial]


def _pop_encoding(options: dict, vcodec: str) -> VideoEncoding:
    fields = {k: options.pop(k) for k in ("pix_fmt", "g", "crf", "preset") if k in options}
    return VideoEncoding(vcodec=vcodec, **fields)


def _check_resume_matches(root: Path, info: DatasetInfo, fps, features, robot_type) -> None:
    problems = []
    if fps is not None and int(fps) != info.fps:
        problems.append(f"fps differs (dataset {info.fps}, requested {fps})")
    if robot_type is not None and robot_type != info.robot_type:
        problems.append(f"robot_type differs (dataset {info.robot_type!r}, requested {robot_type!r})")
    if features is not None:
        requested = features_from_json({**features, **fmt.DEFAULT_FEATURES}, "requested features")
        have, want = feature_signature(info.features), feature_signature(requested)
        cams_have, cams_want = set(info.video_keys), set(video_keys(requested))
        if cams_have != cams_want:
            problems.append(f"cameras differ (dataset {sorted(cams_have)}, requested {sorted(cams_want)})")
        for key in sorted(set(have) | set(want)):
            if key in cams_have ^ cams_want:
                continue
            if key not in have:
                problems.append(f"feature {key!r} is not in the dataset")
            elif key not in want:
                problems.append(f"feature {key!r} of the dataset is missing from the request")
            elif have[key] != want[key]:
                problems.append(f"feature {key!r} differs (dataset {have[key]}, requested {want[key]})")
    if problems:
        raise DatasetFormatError(f"cannot resume {root}: " + "; ".join(problems))
