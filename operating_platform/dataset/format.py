"""The LeRobot v2.1 on-disk contract, in one place (v3.0's is in v30/layout.py; which
versions exist and which one new datasets get is here).

Everything that knows a path template, a metadata file name, a feature's dtype or
how JSON metadata is written atomically lives here, so the writer, the validator
and the training reader cannot drift apart; meta/info.json itself is the typed
`DatasetInfo` of info.py. See ../shared/DESIGN.md ("The dataset").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

CODEBASE_VERSION = "v2.1"
V30 = "v3.0"  # LeRobot >= 0.4; its layout lives in v30/layout.py
CODEBASE_VERSIONS = (V30, CODEBASE_VERSION)
DEFAULT_CODEBASE_VERSION = V30  # what new datasets are written as
DEFAULT_CHUNK_SIZE = 1000

DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"

INFO_PATH = "meta/info.json"
EPISODES_PATH = "meta/episodes.jsonl"
TASKS_PATH = "meta/tasks.jsonl"
EPISODES_STATS_PATH = "meta/episodes_stats.jsonl"

# Working areas inside a dataset root. Hidden, so LeRobot's reader (which globs data/)
# never sees them; the validator knows them by these names.
STAGING_DIR = ".staging"  # files being written, renamed into data/ and videos/ when complete
SPOOL_DIR = ".spool"  # raw frames of episodes not yet committed (crash recovery)
TEMP_SUFFIX = ".tmp"

IMAGE_KEY_PREFIX = "observation.images."
STATE_KEY = "observation.state"
ACTION_KEY = "action"

# Per-frame bookkeeping columns every LeRobot v2.1 dataset has, in LeRobot's order.
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}

DEFAULT_VIDEO_CODEC = "libsvtav1"
DEFAULT_PIX_FMT = "yuv420p"
DEFAULT_GOP = 2
DEFAULT_CRF = 30


class DatasetFormatError(ValueError):
    """A dataset on disk (or a request to create/resume one) breaks the LeRobot v2.1 or v3.0 contract."""


# --------------------------------------------------------------------------- features


def build_features(
    joint_names: list[str] | tuple[str, ...],
    cameras: dict[str, tuple[int, int]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Feature dict for a robot with `joint_names` and `cameras` {name: (height, width)}.

    The per-camera `info` block is added by the writer from the first encoded video,
    because only the written file knows its real codec and pixel format.
    """
    names = list(joint_names)
    if not names:
        raise DatasetFormatError("build_features: joint_names is empty")
    features: dict[str, dict[str, Any]] = {
        ACTION_KEY: {"dtype": "float32", "shape": [len(names)], "names": names},
        STATE_KEY: {"dtype": "float32", "shape": [len(names)], "names": names},
    }
    for cam, (height, width) in (cameras or {}).items():
        features[IMAGE_KEY_PREFIX + cam] = {
            "dtype": "video",
            "shape": [int(height), int(width), 3],
            "names": ["height", "width", "channels"],
        }
    features.update({k: dict(v) for k, v in DEFAULT_FEATURES.items()})
    return features


# --------------------------------------------------------------------------- paths


def episode_chunk(episode_index: int, chunks_size: int = DEFAULT_CHUNK_SIZE) -> int:
    return episode_index // chunks_size


def data_relpath(episode_index: int, chunks_size: int = DEFAULT_CHUNK_SIZE, template: str = DATA_PATH) -> str:
    return template.format(episode_chunk=episode_chunk(episode_index, chunks_size), episode_index=episode_index)


def video_relpath(video_key: str, episode_index: int, chunks_size: int = DEFAULT_CHUNK_SIZE,
                  template: str = VIDEO_PATH) -> str:
    return template.format(
        episode_chunk=episode_chunk(episode_index, chunks_size),
        video_key=video_key,
        episode_index=episode_index,
    )


# --------------------------------------------------------------------------- durable files


def fsync_file(path: Path) -> None:
    """Make a file written (and closed) by someone else survive power loss before it is renamed in."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Temp file + rename: readers see the old file or the new one, never half of one.

    `durable` adds the fsyncs that make it survive power loss too; a killed process
    needs only the rename (the kernel keeps what was written).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TEMP_SUFFIX)
    with open(tmp, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def write_json_atomic(path: Path, obj: Any, durable: bool = True) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=4, ensure_ascii=False) + "\n").encode(), durable)


def write_jsonl_atomic(path: Path, rows: Iterable[dict]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    write_bytes_atomic(path, text.encode())


def read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise
    except json.JSONDecodeError as e:
        raise DatasetFormatError(f"{path}: invalid JSON ({e})") from e


def iter_jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetFormatError(f"{path}:{lineno}: invalid JSON line ({e})") from e


def read_jsonl(path: Path) -> list[dict]:
    return list(iter_jsonl(path)) if path.exists() else []


def check_codebase_version(version: str, where: str = "dataset_version") -> str:
    if version not in CODEBASE_VERSIONS:
        raise DatasetFormatError(f"{where}: {version!r} is not a supported LeRobot format (choose one of {', '.join(CODEBASE_VERSIONS)})")
    return version
