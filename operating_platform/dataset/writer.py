"""LeRobotDataset: record frames into a LeRobot dataset without making the operator wait.

This is the common per-episode commit protocol; a v2.1 dataset is exactly what it writes,
a v3.0 one (v30/recording.py) uses it as its durable per-episode store.

Life of an episode:
  add_frame()     appends to the episode's spool on disk (and feeds the live video encoders)
  save_episode()  seals the spool and hands it over — to the AsyncEpisodeSaver (returns at
                  once) or, in sync mode, commits it before returning
  commit          videos + parquet written in .staging/, fsynced, renamed into data/ and
                  videos/, then the JSONL metadata, then info.json: info.json is the commit
                  point, so a reader never sees an episode whose files are incomplete.
On open, everything past info.json's totals is rolled back and spooled episodes that
were saved but not committed are committed again — a crash loses nothing saved.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import format as fmt
from .format import DatasetFormatError
from .parquet import episode_table, episode_timestamps, write_table_durably
from .recovery import remove_uncommitted_episode_files, repair_dataset
from .spool import (
    COMMIT_MARKER,
    EpisodeBuffer,
    SpoolLayout,
    load_spooled_episode,
    spooled_episode_dirs,
)
from .stats import image_stats, vector_stats
from .video import LiveEncoderThread, VideoEncodeError, VideoEncoding, encode_video, probe_video_info

logger = logging.getLogger(__name__)

_spool_counter = itertools.count()


class LeRobotDataset:
    """A LeRobot v2.1 dataset being recorded. Create with `create()`, resume with `open()`."""

    def __init__(
        self,
        root: Path,
        info: dict,
        *,
        repo_id: str | None = None,
        use_async_saver: bool = True,
        batch_encoding_size: int = 1,
        encoding: VideoEncoding = VideoEncoding(),
        async_save_queue_size: int = 10,
        async_save_max_retries: int = 3,
        async_save_timeout: float = 300.0,
        live_encoding: bool = True,
    ):
        if batch_encoding_size < 1:
            raise ValueError(f"batch_encoding_size must be >= 1, got {batch_encoding_size}")
        self.root = Path(root)
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
        self._next_index = info["total_episodes"]  # advanced per hand-over, back per abandoned save
        self.episode_buffer: EpisodeBuffer | None = None
        self._live_encoder_threads: dict[str, LiveEncoderThread] = {}
        if video_keys := fmt.video_keys(self.features):
            encoding.check_available()
        self._layout = SpoolLayout(
            vector_shapes={k: int(np.prod(self.features[k]["shape"])) for k in fmt.vector_keys(self.features)},
            camera_shapes={k: tuple(self.features[k]["shape"]) for k in video_keys},
        )
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
        if codebase_version == fmt.V30:  # per-episode commits into a hidden store, packed into v3.0 files
            from .v30.recording import create_v30

            return create_v30(cls, repo_id, root, fps, features, robot_type, chunks_size, use_async_saver,
                              vcodec=vcodec, batch_encoding_size=batch_encoding_size, **options)
        info = fmt.new_info(fps, features, robot_type, chunks_size)
        root.mkdir(parents=True, exist_ok=True)
        fmt.write_json_atomic(root / fmt.INFO_PATH, info)
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
        on_disk = fmt.read_info_any(root).get("codebase_version")
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
        info = fmt.load_info(root)
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
    def meta(self) -> dict:
        return self.info

    @property
    def features(self) -> dict:
        return self.info["features"]

    @property
    def fps(self) -> int:
        return self.info["fps"]

    @property
    def num_episodes(self) -> int:
        """Episodes committed to disk."""
        return self.info["total_episodes"]

    @property
    def num_frames(self) -> int:
        return self.info["total_frames"]

    @property
    def next_episode_index(self) -> int:
        """Index the episode being recorded will get (if every earlier save succeeds)."""
        return self._next_index

    # ------------------------------------------------------------------ recording

    def add_frame(self, frame: dict, task: str | None = None) -> None:
        """Append one frame to the current episode (timestamps are set on the 1/fps grid)."""
        task = task if task is not None else frame.get("task")
        if self.episode_buffer is None:
            self.episode_buffer = self._new_episode_buffer()
        self.episode_buffer.add_frame(frame, task)

    def _new_episode_buffer(self) -> EpisodeBuffer:
        spool_id = f"{time.time_ns():020d}-{next(_spool_counter):06d}"
        buffer = EpisodeBuffer.create(self.root / fmt.SPOOL_DIR / spool_id, self._layout, self.fps)
        if self.live_encoding:
            for key in self._layout.camera_shapes:
                if key not in self._live_encoder_threads:
                    self._live_encoder_threads[key] = LiveEncoderThread(key, self.encoding)
                path = self._staging(buffer) / f"{key}.mp4"
                buffer.live_encoders[key] = self._live_encoder_threads[key].follow(buffer, path)
        return buffer

    def clear_episode_buffer(self) -> None:
        """Discard the episode being recorded (re-record): it leaves no trace on disk."""
        if self.episode_buffer is not None:
            self.episode_buffer.discard()
            for enc in self.episode_buffer.live_encoders.values():
                enc.finish()
            shutil.rmtree(self._staging(self.episode_buffer), ignore_errors=True)
            self.episode_buffer = None

    def end_episode(self) -> EpisodeBuffer:
        """Seal the current episode and take ownership of it (for AsyncEpisodeSaver.submit_episode)."""
        buffer = self.episode_buffer
        if buffer is None or buffer.num_frames == 0:
            raise ValueError("save_episode: the episode has no frames (call add_frame first)")
        buffer.end()
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
        self.commit_saved_episode(buffer)
        return index

    # ------------------------------------------------------------------ async API (reference names)

    def start_async_saver(self) -> None:
        from operating_platform.saving.async_saver import AsyncEpisodeSaver

        if self.async_saver is None or not self.async_saver.get_status()["is_running"]:
            self.async_saver = AsyncEpisodeSaver(self, **self._async_settings)

    def stop_async_saver(self, wait: bool = True, timeout: float | None = None) -> None:
        if self.async_saver is not None:
            self.async_saver.stop(wait=wait, timeout=timeout)
            self.async_saver = None

    def enable_async_saving(self, max_queue_size: int = 10, save_timeout: float = 300.0, max_retries: int | None = None) -> None:
        self._async_settings.update(max_queue_size=max_queue_size, save_timeout=save_timeout)
        if max_retries is not None:
            self._async_settings["max_retries"] = max_retries
        self.start_async_saver()

    def disable_async_saving(self, wait_for_completion: bool = True, timeout: float | None = None) -> None:
        self.stop_async_saver(wait=wait_for_completion, timeout=timeout)

    def save_episode_async(self, episode_buffer: EpisodeBuffer | None = None) -> bool:
        """Queue the current episode; False (episode untouched) when no saver is running."""
        if self.async_saver is None or not self.async_saver.get_status()["is_running"]:
            return False
        if episode_buffer is not None and episode_buffer is not self.episode_buffer:
            raise ValueError("save_episode_async: episode_buffer must be this dataset's current episode buffer")
        index = self.next_episode_index
        return self.async_saver.submit_episode(self.end_episode(), index)

    def get_async_save_status(self) -> dict:
        if self.async_saver is None:
            return {"is_running": False, "total_submitted": 0, "total_completed": 0, "total_failed": 0,
                    "total_retries": 0, "queue_size": 0, "pending_tasks": 0, "last_error": None, "worker_alive": False}
        return self.async_saver.get_status()

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
        self._commit_awaiting_batch()
        if self.episode_buffer is not None:
            if self.episode_buffer.num_frames == 0:
                self.clear_episode_buffer()
            else:
                logger.warning(
                    "episode in progress (%d frames) was not saved; its frames stay in %s — "
                    "recover with: python scripts/recover_episodes.py %s --include-partial",
                    self.episode_buffer.num_frames, self.episode_buffer.path, self.root,
                )
                self.episode_buffer.abandon()
                self.episode_buffer = None
        for thread in self._live_encoder_threads.values():
            thread.stop()
        self._live_encoder_threads.clear()
        for work_dir in (fmt.STAGING_DIR, fmt.SPOOL_DIR):
            try:
                (self.root / work_dir).rmdir()  # only when empty: what is left there is recoverable
            except OSError:
                pass

    finalize = close

    def __enter__(self) -> "LeRobotDataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ committing

    def commit_saved_episode(self, buffer: EpisodeBuffer, deadline: Callable[[], None] | None = None) -> None:
        """Commit a sealed episode, or park it until its encoding batch is full (the saver's worker calls this)."""
        if buffer not in self._awaiting_batch:
            self._awaiting_batch.append(buffer)
        if len(self._awaiting_batch) >= self.batch_encoding_size:
            self._commit_awaiting_batch(deadline)

    def _commit_awaiting_batch(self, deadline: Callable[[], None] | None = None) -> None:
        while self._awaiting_batch:
            self._commit(self._awaiting_batch[0], deadline)
            self._awaiting_batch.pop(0)

    def abandon_saved_episode(self, buffer: EpisodeBuffer) -> None:
        """After the last retry: stop trying, keep the spool for recovery."""
        if buffer in self._awaiting_batch:
            self._awaiting_batch.remove(buffer)
        self._next_index -= 1
        shutil.rmtree(self._staging(buffer), ignore_errors=True)

    def _staging(self, buffer: EpisodeBuffer) -> Path:
        return self.root / fmt.STAGING_DIR / buffer.spool_id

    def _commit(self, buffer: EpisodeBuffer, deadline: Callable[[], None] | None = None) -> None:
        ep = self.num_episodes
        n = buffer.num_frames
        chunks_size = self.info["chunks_size"]
        staging = self._staging(buffer)
        staging.mkdir(parents=True, exist_ok=True)
        remove_uncommitted_episode_files(self.root, ep)  # residue of an earlier failed attempt
        fmt.write_json_atomic(buffer.path / COMMIT_MARKER, {"episode_index": ep})

        staged: dict[str, Path] = {}
        for key in self._layout.camera_shapes:
            staged[fmt.video_relpath(key, ep, chunks_size)] = self._staged_video(buffer, key, staging, deadline)

        vectors, local_task_ids = buffer.read_vectors()
        task_index = np.asarray(_global_task_indices(buffer.tasks, self._tasks), dtype=np.int64)[local_task_ids]
        first_index = self.num_frames
        columns = {
            **vectors,
            "timestamp": episode_timestamps(n, self.fps),
            "frame_index": np.arange(n, dtype=np.int64),
            "episode_index": np.full(n, ep, dtype=np.int64),
            "index": np.arange(first_index, first_index + n, dtype=np.int64),
            "task_index": task_index,
        }
        parquet_tmp = staging / "data.parquet"
        write_table_durably(episode_table(columns, self.features), parquet_tmp)
        staged[fmt.data_relpath(ep, chunks_size)] = parquet_tmp

        stats = {k: vector_stats(v) for k, v in columns.items()}
        for key in self._layout.camera_shapes:
            stats[key] = image_stats(lambda i, key=key: buffer.frame(key, i), n)

        if deadline is not None:
            deadline()
        # Point of no return on disk: move files in, then metadata, then info.json (the commit point).
        for rel, src in staged.items():
            dst = self.root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            src.replace(dst)
            fmt.fsync_dir(dst.parent)
        self._commit_metadata(ep, n, buffer.tasks, stats)
        shutil.rmtree(buffer.path, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
        logger.info("episode %d committed (%d frames) in %s", ep, n, self.root)

    def _staged_video(self, buffer: EpisodeBuffer, key: str, staging: Path, deadline) -> Path:
        path = staging / f"{key}.mp4"
        live = buffer.live_encoders.pop(key, None)  # usable once: a retry re-encodes from the spool
        if live is not None:
            if live.finish() and path.exists():
                return path
            logger.warning("live encode of %s unusable (%s); re-encoding from the spool", key, live.error)
        n = encode_video((buffer.frame(key, i) for i in range(buffer.num_frames)), path, self.fps, self.encoding, deadline)
        if n != buffer.num_frames:
            raise VideoEncodeError(f"{path}: encoded {n} frames, expected {buffer.num_frames}")
        return path

    def _commit_metadata(self, ep: int, n: int, episode_tasks: list[str], stats: dict) -> None:
        tasks_changed = False
        for task in episode_tasks:
            if task not in self._tasks:
                self._tasks[task] = len(self._tasks)
                tasks_changed = True
        self._episodes.append({"episode_index": ep, "tasks": list(episode_tasks), "length": n})
        self._episodes_stats.append({"episode_index": ep, "stats": stats})
        if tasks_changed:
            fmt.write_jsonl_atomic(
                self.root / fmt.TASKS_PATH, [{"task_index": i, "task": t} for t, i in self._tasks.items()]
            )
        fmt.write_jsonl_atomic(self.root / fmt.EPISODES_PATH, self._episodes)
        fmt.write_jsonl_atomic(self.root / fmt.EPISODES_STATS_PATH, self._episodes_stats)

        info = dict(self.info)
        info["features"] = {k: dict(v) for k, v in self.features.items()}
        for key in self._layout.camera_shapes:
            if "info" not in info["features"][key]:
                video = self.root / fmt.video_relpath(key, ep, info["chunks_size"])
                info["features"][key]["info"] = probe_video_info(video)
        info["total_episodes"] = ep + 1
        info["total_frames"] = self.num_frames + n
        info["total_tasks"] = len(self._tasks)
        info["total_videos"] = (ep + 1) * len(self._layout.camera_shapes)
        info["total_chunks"] = fmt.episode_chunk(ep, info["chunks_size"]) + 1
        info["splits"] = {"train": f"0:{ep + 1}"}
        fmt.write_json_atomic(self.root / fmt.INFO_PATH, info)
        self.info = info

    # ------------------------------------------------------------------ recovery

    def _recover_spooled_episodes(self, recover_partial: bool) -> None:
        partial = []
        for path in spooled_episode_dirs(self.root / fmt.SPOOL_DIR):
            marker = path / COMMIT_MARKER
            if marker.exists() and fmt.read_json(marker)["episode_index"] < self.num_episodes:
                shutil.rmtree(path)  # killed after info.json named it, before the spool was cleaned up
                continue
            buffer = load_spooled_episode(path)
            if not buffer.ended and not recover_partial:
                partial.append(buffer)
                continue
            if buffer.num_frames == 0:
                shutil.rmtree(path, ignore_errors=True)
                continue
            if not buffer.ended:
                buffer.end()
            logger.warning("recovering spooled episode %s (%d frames) as episode %d", path.name, buffer.num_frames, self.num_episodes)
            self._commit(buffer)
        if partial:
            listing = ", ".join(f"{b.path} ({b.num_frames} frames)" for b in partial)
            logger.warning(
                "%d unsaved episode(s) from an interrupted recording kept in the spool: %s — "
                "commit them with: python scripts/recover_episodes.py %s --include-partial "
                "(or delete those folders to drop them)",
                len(partial), listing, self.root,
            )
        self.partial_episodes = [b.path for b in partial]


def _pop_encoding(options: dict, vcodec: str) -> VideoEncoding:
    fields = {k: options.pop(k) for k in ("pix_fmt", "g", "crf", "preset") if k in options}
    return VideoEncoding(vcodec=vcodec, **fields)


def _global_task_indices(episode_tasks: list[str], known: dict[str, int]) -> list[int]:
    """Dataset-wide task index of each episode task; new tasks get the next free indices
    in order of appearance (as _commit_metadata then appends them)."""
    out, next_new = [], len(known)
    for task in episode_tasks:
        if task in known:
            out.append(known[task])
        else:
            out.append(next_new)
            next_new += 1
    return out


def _check_resume_matches(root: Path, info: dict, fps, features, robot_type) -> None:
    problems = []
    if fps is not None and int(fps) != info["fps"]:
        problems.append(f"fps differs (dataset {info['fps']}, requested {fps})")
    if robot_type is not None and robot_type != info.get("robot_type"):
        problems.append(f"robot_type differs (dataset {info.get('robot_type')!r}, requested {robot_type!r})")
    if features is not None:
        have = fmt.feature_signature(info["features"])
        want = fmt.feature_signature({**features, **fmt.DEFAULT_FEATURES})
        cams_have, cams_want = set(fmt.video_keys(info["features"])), set(fmt.video_keys(features))
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
