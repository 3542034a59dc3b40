"""On-disk episode buffer: raw frames appended as they are recorded.

Why a spool instead of an in-memory list: a 20 s, two-camera 640x480 episode is
1.1 GB of pixels. Appending each frame to a file keeps the recorder's memory flat,
makes `save_episode()` a hand-over of a directory (no copy), and means a crash or a
failed save never loses what was recorded — the frames are already on disk and are
committed on the next open.

Layout of one spooled episode (`<root>/.spool/<spool_id>/`):
  spool.json    what was recorded: fps, vector feature shapes, camera shapes
  vectors.bin   fixed-size records: every vector feature as float32, then the task id (int32)
  <video_key>.rgb   raw RGB frames, height*width*3 bytes each
  tasks.json    task strings of this episode; the record's task id indexes it
  ended.json    written by save_episode(): the episode is complete and should be committed
A frame exists once its vectors record is complete; camera bytes are written first.
Whether a spool is already in the dataset is decided from the dataset itself (see commit.py),
never from a marker here. A write that fails (disk full, permission) leaves the episode
incomplete: no later frame is accepted, so the spool holds exactly the frames before the fault.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .format import DatasetFormatError, read_json, write_json_atomic
from .stats import ImageMoments, image_stats

SPOOL_META = "spool.json"
VECTORS_FILE = "vectors.bin"
TASKS_FILE = "tasks.json"
ENDED_MARKER = "ended.json"
TASK_ID_DTYPE = np.dtype("<i4")


class SpoolWriteError(OSError):
    """The spool could not be written (disk full, permission, I/O error); earlier frames are untouched.

    The episode is incomplete from then on: `frames_kept` frames stay in `spool`.
    """

    def __init__(self, cause: OSError, spool: Path, frames_kept: int):
        super().__init__(cause.errno, cause.strerror or str(cause), cause.filename)
        self.cause, self.spool, self.frames_kept = cause, spool, frames_kept
        self.advice = ""  # what the operator can do, added by the dataset that knows its root

    def __str__(self) -> str:
        return (f"cannot write {self.filename or self.spool}: {self.strerror} — the episode is incomplete; "
                f"its {self.frames_kept} frames recorded before the fault are kept in {self.spool}{self.advice}")


class SpoolClosedError(RuntimeError):
    """The episode buffer was handed over (saved or discarded); the caller may not touch it."""


@dataclass(frozen=True)
class SpoolLayout:
    """Byte layout of one episode's frames, derived from the dataset features."""

    vector_shapes: dict[str, int]  # key -> length
    camera_shapes: dict[str, tuple[int, int, int]]  # video key -> (h, w, 3)

    @property
    def record_floats(self) -> int:
        return sum(self.vector_shapes.values())

    @property
    def record_bytes(self) -> int:
        return self.record_floats * 4 + TASK_ID_DTYPE.itemsize

    def frame_bytes(self, key: str) -> int:
        h, w, c = self.camera_shapes[key]
        return h * w * c

    def to_json(self) -> dict:
        return {
            "vector_shapes": self.vector_shapes,
            "camera_shapes": {k: list(v) for k, v in self.camera_shapes.items()},
        }

    @classmethod
    def from_json(cls, obj: dict) -> "SpoolLayout":
        return cls(
            vector_shapes={k: int(v) for k, v in obj["vector_shapes"].items()},
            camera_shapes={k: tuple(int(x) for x in v) for k, v in obj["camera_shapes"].items()},
        )


@dataclass
class EpisodeBuffer:
    """The episode being recorded. Owned by the recorder until handed over, then by the saver.

    `add_frame` validates and appends one frame; it never holds frames in memory.
    Live encodes follow the spool (`follow`), waiting on `frame_added`.
    """

    path: Path
    layout: SpoolLayout
    fps: int
    num_frames: int = 0
    tasks: list[str] = field(default_factory=list)
    ended: bool = False
    discarded: bool = False
    fault: SpoolWriteError | None = None  # set by the first failed write; the episode is incomplete
    live_encoders: dict = field(default_factory=dict, repr=False)  # video key -> video.EncodeJob
    image_moments: dict[str, ImageMoments] = field(default_factory=dict, repr=False)  # what `follow` saw
    frame_added: threading.Condition = field(default_factory=threading.Condition, repr=False)

    @classmethod
    def create(cls, path: Path, layout: SpoolLayout, fps: int) -> "EpisodeBuffer":
        try:
            path.mkdir(parents=True, exist_ok=False)
            write_json_atomic(path / SPOOL_META, {"fps": fps, "created_ns": time.time_ns(), **layout.to_json()},
                              durable=False)
            for name in [VECTORS_FILE, *(f"{k}.rgb" for k in layout.camera_shapes)]:
                (path / name).touch()
        except OSError as e:
            shutil.rmtree(path, ignore_errors=True)  # holds no frame yet
            raise SpoolWriteError(e, path, 0) from e
        return cls(path=path, layout=layout, fps=fps)

    @property
    def spool_id(self) -> str:
        return self.path.name

    def add_frame(self, frame: dict, task: str) -> None:
        if self.ended or self.discarded:
            raise SpoolClosedError(f"episode buffer {self.path} was already handed over; start a new episode")
        if self.fault is not None:
            raise self.fault
        vectors, images = self._validate(frame)
        if not isinstance(task, str) or not task:
            raise ValueError(f"add_frame: task must be a non-empty string, got {task!r}")
        try:
            if task not in self.tasks:
                write_json_atomic(self.path / TASKS_FILE, [*self.tasks, task], durable=False)
                self.tasks.append(task)
            record = np.concatenate(vectors).astype("<f4").tobytes() + np.array(
                [self.tasks.index(task)], TASK_ID_DTYPE
            ).tobytes()
            for key, img in images.items():
                _append(self.path / f"{key}.rgb", img)
            _append(self.path / VECTORS_FILE, record)  # last: the frame exists once this is whole
        except OSError as e:
            self._fail(e)
        with self.frame_added:
            self.num_frames += 1
            self.frame_added.notify_all()

    def _validate(self, frame: dict) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
        vectors = []
        for key, length in self.layout.vector_shapes.items():
            if key not in frame:
                raise ValueError(f"add_frame: frame is missing feature {key!r}")
            value = np.asarray(frame[key])
            if value.ndim > 1 or value.size != length:
                raise ValueError(f"add_frame: {key!r} has shape {value.shape}, expected ({length},)")
            if not np.issubdtype(value.dtype, np.number) and value.dtype != bool:
                raise ValueError(f"add_frame: {key!r} has dtype {value.dtype}, expected numbers")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"add_frame: {key!r} contains NaN or inf: {value}")
            vectors.append(value.reshape(-1))
        images = {}
        for key, shape in self.layout.camera_shapes.items():
            if key not in frame:
                raise ValueError(f"add_frame: frame is missing camera {key!r}")
            img = np.asarray(frame[key])
            if img.shape != shape or img.dtype != np.uint8:
                raise ValueError(
                    f"add_frame: {key!r} is {img.dtype}{list(img.shape)}, expected uint8{list(shape)} (RGB)"
                )
            images[key] = img
        unknown = set(frame) - set(self.layout.vector_shapes) - set(self.layout.camera_shapes) - {"timestamp", "task"}
        if unknown:
            raise ValueError(f"add_frame: unknown features {sorted(unknown)}")
        return vectors, images

    def resume_after_fault(self) -> None:
        """Space was freed (the dataset's reserve): accept frames again after the ones kept."""
        self.fault = None

    def _fail(self, cause: OSError):
        """Keep the frames before the fault, refuse every later one, and raise."""
        try:
            self._truncate_to(self.num_frames)  # a torn frame would shift the next ones
        except OSError:
            pass  # load_spooled_episode trims to whole frames anyway
        self.fault = SpoolWriteError(cause, self.path, self.num_frames)
        with self.frame_added:  # live encodes stop; the episode is not ended
            self.frame_added.notify_all()
        raise self.fault from cause

    def _truncate_to(self, frames: int) -> None:
        """Drop a torn frame so later appends stay aligned on frame boundaries."""
        os.truncate(self.path / VECTORS_FILE, frames * self.layout.record_bytes)
        for key in self.layout.camera_shapes:
            os.truncate(self.path / f"{key}.rgb", frames * self.layout.frame_bytes(key))

    def end(self) -> None:
        """Seal the episode: from now on it belongs to whoever commits it.

        An incomplete episode (a write failed) is never sealed: it stays a partial spool
        that scripts/recover_episodes.py keeps or drops.
        """
        if self.fault is not None:
            raise self.fault
        if self.num_frames == 0:
            raise ValueError("save_episode: the episode has no frames (call add_frame first)")
        try:
            write_json_atomic(self.path / ENDED_MARKER, {"num_frames": self.num_frames, "tasks": self.tasks},
                              durable=False)
        except OSError as e:
            self._fail(e)
        with self.frame_added:
            self.ended = True
            self.frame_added.notify_all()

    def abandon(self) -> None:
        """Stop live encodes following this episode; its spool stays on disk (recoverable)."""
        with self.frame_added:
            self.discarded = True
            self.frame_added.notify_all()

    def discard(self) -> None:
        self.abandon()
        shutil.rmtree(self.path, ignore_errors=True)

    def wait_for_frame(self, index: int, timeout: float = 0.5) -> bool:
        """Block until frame `index` exists; False once the episode ended/discarded/failed without it."""
        with self.frame_added:
            while self.num_frames <= index:
                if self.ended or self.discarded or self.fault is not None:
                    return False
                self.frame_added.wait(timeout)
            return True

    def follow(self, key: str) -> Iterator[np.ndarray]:
        """Camera `key`'s frames in order, waiting for those still being recorded (a live encode),
        until the episode ends or a write fails; raises SpoolClosedError once the episode is
        discarded (the encode then drops its file). Each frame's image moments are kept on the
        way, so whichever encode reads the frames also gives `image_stats`."""
        moments = self.image_moments[key] = ImageMoments()
        while self.wait_for_frame(len(moments)):
            frame = self.frame(key, len(moments))
            moments.add(frame)
            yield frame
        if self.discarded:
            raise SpoolClosedError(f"episode {self.path} was discarded after {len(moments)} frames")

    # ------------------------------------------------------------- reading back

    def read_vectors(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """All vector features as float32 arrays [n, len], and the per-frame task id."""
        n = self.num_frames
        raw = np.fromfile(self.path / VECTORS_FILE, dtype=np.uint8, count=n * self.layout.record_bytes)
        records = raw.reshape(n, self.layout.record_bytes)
        floats = records[:, : self.layout.record_floats * 4].copy().view("<f4").reshape(n, -1)
        task_ids = records[:, self.layout.record_floats * 4 :].copy().view(TASK_ID_DTYPE).reshape(n)
        out, col = {}, 0
        for key, length in self.layout.vector_shapes.items():
            out[key] = floats[:, col : col + length].astype(np.float32)
            col += length
        return out, task_ids

    def frame(self, key: str, index: int) -> np.ndarray:
        size = self.layout.frame_bytes(key)
        with open(self.path / f"{key}.rgb", "rb") as f:
            f.seek(index * size)
            data = f.read(size)
        if len(data) != size:
            raise DatasetFormatError(f"{self.path / (key + '.rgb')}: frame {index} is truncated")
        return np.frombuffer(data, dtype=np.uint8).reshape(self.layout.camera_shapes[key])

    def image_stats(self, key: str) -> dict[str, list]:
        """Camera `key`'s image stats: from the moments `follow` kept when it saw every frame,
        else from the sampled frames read back (a reopened spool, a live encode that stopped early)."""
        seen = self.image_moments.get(key)
        if seen is not None and len(seen) >= self.num_frames:
            return seen.stats(self.num_frames)
        return image_stats(lambda i: self.frame(key, i), self.num_frames)


def _append(path: Path, data) -> None:
    try:
        with open(path, "ab") as f:
            f.write(memoryview(np.ascontiguousarray(data)).cast("B") if isinstance(data, np.ndarray) else data)
    except OSError as e:
        e.filename = e.filename or str(path)  # a failed write() names no file
        raise


def load_spooled_episode(path: Path) -> EpisodeBuffer:
    """Re-open a spooled episode after a restart; trims a frame torn by a crash."""
    meta = read_json(path / SPOOL_META)
    layout = SpoolLayout.from_json(meta)
    complete = os.path.getsize(path / VECTORS_FILE) // layout.record_bytes
    for key in layout.camera_shapes:
        complete = min(complete, os.path.getsize(path / f"{key}.rgb") // layout.frame_bytes(key))
    ended_path = path / ENDED_MARKER
    ended = ended_path.exists()
    if ended:
        complete = min(complete, int(read_json(ended_path)["num_frames"]))
    tasks = read_json(path / TASKS_FILE) if (path / TASKS_FILE).exists() else []
    return EpisodeBuffer(path=path, layout=layout, fps=int(meta["fps"]), num_frames=complete, tasks=tasks, ended=ended)


def spooled_episode_dirs(spool_root: Path) -> list[Path]:
    """Spooled episodes in recording order (spool ids sort by creation)."""
    if not spool_root.is_dir():
        return []
    return sorted(p for p in spool_root.iterdir() if p.is_dir() and (p / SPOOL_META).exists())
