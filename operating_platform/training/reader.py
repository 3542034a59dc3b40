"""Random access to the frames of a LeRobot v2.1 or v3.0 dataset, as training samples.

Sample i is frame i of the dataset (episodes in order) with what a policy needs:
the state (1, D), the chunk of the next H actions of the same episode with a
padding mask where the chunk runs past the episode's end (the last action is
repeated there, as LeRobot's delta_timestamps do), each camera's frame decoded at
the frame's timestamp, and the task text. The tabular data (a few floats per frame)
is loaded once; videos are decoded on demand. Any valid v2.1 or v3.0 dataset works, not
only ours; problems are reported with the file and field at fault. In v3.0 an episode is a
row range of a shared parquet and a segment of a shared mp4 (from_timestamp onwards).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from operating_platform.dataset.format import (
    ACTION_KEY,
    EPISODES_PATH,
    INFO_PATH,
    STATE_KEY,
    TASKS_PATH,
    DatasetFormatError,
    read_jsonl,
)
from operating_platform.dataset.info import DatasetInfo, Feature
from operating_platform.dataset.v30 import layout as v30

from .video_frames import VideoFrameReader

IMAGE_DTYPES = ("uint8", "float32")
ACTION_PAD_KEY = ACTION_KEY + "_is_pad"
_BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", "task_index")


def _column_array(table: pa.Table, key: str, shape: list[int], path: Path) -> np.ndarray:
    if key not in table.column_names:
        raise DatasetFormatError(f"{path}: column {key!r} is missing")
    column = table.column(key).combine_chunks()
    width = int(np.prod(shape))
    if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type) or pa.types.is_large_list(column.type):
        flat = column.flatten().to_numpy(zero_copy_only=False)
    else:
        flat = column.to_numpy(zero_copy_only=False)
    if flat.size != len(table) * width:
        raise DatasetFormatError(f"{path}: column {key!r} has {flat.size} values for {len(table)} rows of shape {shape}")
    return flat.reshape((len(table), *shape)) if shape != [1] else flat


class LeRobotReader:
    """Training samples from the LeRobot v2.1 or v3.0 dataset at `root`."""

    def __init__(
        self,
        root: str | Path,
        action_horizon: int = 16,
        image_dtype: str = "uint8",
        camera_keys: list[str] | None = None,
        tolerance_s: float = 1e-4,
        max_open_videos: int = 16,
    ):
        if action_horizon < 1:
            raise ValueError(f"LeRobotReader: action_horizon must be >= 1, got {action_horizon}")
        if image_dtype not in IMAGE_DTYPES:
            raise ValueError(f"LeRobotReader: image_dtype must be one of {IMAGE_DTYPES}, got {image_dtype!r}")
        self.root = Path(root)
        self.action_horizon = action_horizon
        self.image_dtype = image_dtype
        self.info = DatasetInfo.load(self.root)  # v2.1 or v3.0
        self.is_v30 = self.info.is_v30
        self.features: dict[str, Feature] = self.info.features
        self.fps = self.info.fps
        for key in (STATE_KEY, ACTION_KEY):
            if key not in self.features:
                raise DatasetFormatError(f"{self.root / INFO_PATH}: feature {key!r} is missing")
        all_cameras = self.info.video_keys
        unknown = sorted(set(camera_keys or []) - set(all_cameras))
        if unknown:
            raise ValueError(f"LeRobotReader: cameras {unknown} are not in {self.root} (it has {all_cameras})")
        self.camera_keys = list(all_cameras if camera_keys is None else camera_keys)
        self.vector_keys = self.info.vector_keys
        self._frames = VideoFrameReader(tolerance_s, max_open_videos)
        self._load_metadata()
        self._load_tables()

    # ------------------------------------------------------------------ loading
    def _load_metadata(self) -> None:
        if self.is_v30:
            episodes_path = self.root / v30.EPISODES_DIR
            self.episodes = [{k: v for k, v in e.items() if not k.startswith("stats/")} for e in v30.read_episodes(self.root)]
            self.tasks = dict(enumerate(v30.read_tasks(self.root)))
        else:
            episodes_path = self.root / EPISODES_PATH
            self.episodes = sorted(read_jsonl(episodes_path), key=lambda e: e["episode_index"])
            self.tasks = {int(t["task_index"]): t["task"] for t in read_jsonl(self.root / TASKS_PATH)}
        if not self.episodes:
            raise DatasetFormatError(f"{episodes_path}: no episodes (is the dataset empty?)")

    def _load_tables(self) -> None:
        columns: dict[str, list[np.ndarray]] = {k: [] for k in (*self.vector_keys, *_BOOKKEEPING)}
        lengths = []
        shared: dict[Path, pa.Table] = {}  # v3.0: each shared data file read once
        for ep in self.episodes:
            ep_index = int(ep["episode_index"])
            path = self._data_path(ep)
            if not path.exists():
                raise DatasetFormatError(f"{path}: parquet of episode {ep_index} is missing")
            if self.is_v30:
                if path not in shared:
                    shared[path] = pq.read_table(path)
                file_table = shared[path]
                table = file_table.filter(pa.compute.equal(file_table.column("episode_index"), ep_index))
            else:
                table = pq.read_table(path)
            if len(table) != int(ep["length"]):
                raise DatasetFormatError(
                    f"{path}: {len(table)} rows but {EPISODES_PATH} says episode {ep_index} has length {ep['length']}"
                )
            for key in columns:
                shape = list(self.features[key].shape) if key in self.features else [1]
                columns[key].append(_column_array(table, key, shape, path))
            lengths.append(len(table))
        data = {k: np.concatenate(v) for k, v in columns.items()}
        self._vectors = {k: data[k].astype(np.float32, copy=False) for k in self.vector_keys}
        self._timestamps = data["timestamp"].astype(np.float64)
        self._frame_index = data["frame_index"].astype(np.int64)
        self._episode_index = data["episode_index"].astype(np.int64)
        self._index = data["index"].astype(np.int64)
        self._task_index = data["task_index"].astype(np.int64)
        self._ep_ends = np.cumsum(lengths)
        self._ep_starts = self._ep_ends - np.asarray(lengths)
        self._row_episode = np.repeat(np.arange(len(lengths)), lengths)  # row -> position in self.episodes
        unknown_tasks = sorted(set(np.unique(self._task_index).tolist()) - set(self.tasks))
        if unknown_tasks:
            raise DatasetFormatError(f"{self.root / TASKS_PATH}: task_index {unknown_tasks} used in data but not listed")

    # ------------------------------------------------------------------ source protocol
    def __len__(self) -> int:
        return int(self._ep_ends[-1])

    def fingerprint(self) -> str:
        """Identity of the data (not of its location): features, fps, episodes and tasks."""
        desc = {
            "fps": self.fps,
            "features": {k: [ft.dtype, list(ft.shape)] for k, ft in self.features.items()},
            "episodes": [[e["episode_index"], e["length"], e.get("tasks")] for e in self.episodes],
            "tasks": sorted(self.tasks.items()),
            "cameras": self.camera_keys,
            "horizon": self.action_horizon,
        }
        return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:32]

    def __repr__(self) -> str:
        return f"LeRobotReader({str(self.root)!r}, frames={len(self)}, episodes={len(self.episodes)})"

    def _data_path(self, ep: dict) -> Path:
        if self.is_v30:
            return self.root / self.info.data_path(chunk=ep["data/chunk_index"], file=ep["data/file_index"])
        return self.root / self.info.data_path(int(ep["episode_index"]))

    def video_path(self, camera_key: str, row: int) -> Path:
        if self.is_v30:
            ep = self.episodes[int(self._row_episode[row])]
            chunk_col, file_col, _, _ = v30.video_columns(camera_key)
            return self.root / self.info.video_path(camera_key, chunk=ep[chunk_col], file=ep[file_col])
        return self.root / self.info.video_path(camera_key, int(self._episode_index[row]))

    def video_time(self, camera_key: str, row: int) -> float:
        """Where frame `row` sits in its video file: its timestamp, after the episode's segment start in v3.0."""
        start = self.episodes[int(self._row_episode[row])][v30.video_columns(camera_key)[2]] if self.is_v30 else 0.0
        return float(start) + float(self._timestamps[row])

    def __getitem__(self, row: int) -> dict[str, Any]:
        row = int(row)
        if not 0 <= row < len(self):
            raise IndexError(f"{self!r}: index {row} out of range [0, {len(self)})")
        ep_pos = int(self._row_episode[row])
        end = int(self._ep_ends[ep_pos])
        steps = row + np.arange(self.action_horizon)
        is_pad = steps >= end
        chunk_rows = np.minimum(steps, end - 1)
        sample: dict[str, Any] = {}
        for key in self.vector_keys:
            values = self._vectors[key]
            if key == ACTION_KEY:
                sample[key] = values[chunk_rows]
            elif key == STATE_KEY:
                sample[key] = values[row][None]  # one observation step, as delta_timestamps [0] gives
            else:
                sample[key] = values[row]
        sample[ACTION_PAD_KEY] = is_pad
        timestamp = float(self._timestamps[row])
        for cam in self.camera_keys:
            frame = self._frames.frame_at(self.video_path(cam, row), self.video_time(cam, row))
            sample[cam] = frame if self.image_dtype == "uint8" else frame.astype(np.float32) / np.float32(255.0)
        sample["timestamp"] = np.float32(timestamp)
        sample["frame_index"] = self._frame_index[row]
        sample["episode_index"] = self._episode_index[row]
        sample["index"] = self._index[row]
        sample["task_index"] = self._task_index[row]
        sample["task"] = self.tasks[int(self._task_index[row])]
        return sample

    # ------------------------------------------------------------------ for models
    def vector_stats(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of a vector feature over the whole dataset, std floored to avoid division by 0."""
        values = self._vectors[key].reshape(len(self), -1).astype(np.float64)
        return values.mean(0).astype(np.float32), np.maximum(values.std(0), 1e-6).astype(np.float32)

    def close(self) -> None:
        self._frames.close()
