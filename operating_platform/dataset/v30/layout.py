"""The LeRobot v3.0 on-disk contract (as LeRobot 0.4.4 reads and writes it), in one place.

Many episodes share one data parquet and one mp4 per camera; `meta/episodes/*` says where
each episode sits (rows `dataset_from_index:dataset_to_index`, video seconds
`from_timestamp:to_timestamp`). LeRobot's reader globs every parquet under `data/*/` and
`meta/episodes/*/`, so anything unfinished lives in hidden directories beside them.
See ../shared/DESIGN.md ("LeRobot v3.0").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .. import format as fmt

CODEBASE_VERSION = fmt.V30
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 200

DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_DIR = "meta/episodes"
TASKS_PATH = "meta/tasks.parquet"
STATS_PATH = "meta/stats.json"

# Hidden working areas. STORE_DIR holds committed episodes not yet packed, one parquet and
# one mp4 each (a v2.1 dataset written by the common writer); PACK_DIR the files of a pack
# in progress and its journal.
STORE_DIR = ".episodes"
PACK_DIR = ".pack"
PACK_JOURNAL = "journal.json"


def next_file(chunk_index: int, file_index: int, chunks_size: int) -> tuple[int, int]:
    """The file after (chunk, file): `chunks_size` files per chunk directory, as LeRobot counts."""
    return (chunk_index + 1, 0) if file_index >= chunks_size - 1 else (chunk_index, file_index + 1)


def data_relpath(chunk_index: int, file_index: int, template: str = DATA_PATH) -> str:
    return template.format(chunk_index=chunk_index, file_index=file_index)


def video_relpath(video_key: str, chunk_index: int, file_index: int, template: str = VIDEO_PATH) -> str:
    return template.format(video_key=video_key, chunk_index=chunk_index, file_index=file_index)


def episodes_relpath(chunk_index: int, file_index: int) -> str:
    return EPISODES_PATH.format(chunk_index=chunk_index, file_index=file_index)


def video_columns(video_key: str) -> tuple[str, str, str, str]:
    """Episode-row columns locating one camera's segment: chunk, file, from_timestamp, to_timestamp."""
    prefix = f"videos/{video_key}/"
    return (prefix + "chunk_index", prefix + "file_index", prefix + "from_timestamp", prefix + "to_timestamp")


STAT_NAMES = ("min", "max", "mean", "std", "count")


def stats_column(feature: str, stat: str) -> str:
    return f"stats/{feature}/{stat}"


# --------------------------------------------------------------------------- metadata files


def read_episodes(root: Path) -> list[dict]:
    """Every episode row of meta/episodes/, in episode order (files sorted as LeRobot sorts them)."""
    rows: list[dict] = []
    for path in sorted((root / EPISODES_DIR).glob("*/*.parquet")):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def episode_stats_of(row: dict) -> dict[str, dict[str, list]]:
    """{feature: {stat: value}} from an episode row's `stats/<feature>/<stat>` columns."""
    out: dict[str, dict[str, list]] = {}
    for key, value in row.items():
        if key.startswith("stats/"):
            feature, stat = key[len("stats/"):].rsplit("/", 1)
            out.setdefault(feature, {})[stat] = value
    return out


def tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet: column task_index, the task string as the pandas index (as LeRobot writes it)."""
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64", "metadata": None},
            {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    schema = pa.schema([("task_index", pa.int64()), ("__index_level_0__", pa.string())],
                       metadata={"pandas": json.dumps(pandas_meta)})
    return pa.Table.from_arrays([pa.array(range(len(tasks)), pa.int64()), pa.array(tasks, pa.string())], schema=schema)


def read_tasks(root: Path) -> list[str]:
    """Tasks in task_index order."""
    path = root / TASKS_PATH
    if not path.exists():
        return []
    table = pq.read_table(path)
    names = [n for n in table.column_names if n != "task_index"]
    if len(names) != 1:
        raise fmt.DatasetFormatError(f"{path}: expected columns task_index and the task index, got {table.column_names}")
    by_index = dict(zip(table.column("task_index").to_pylist(), table.column(names[0]).to_pylist()))
    if sorted(by_index) != list(range(len(by_index))):
        raise fmt.DatasetFormatError(f"{path}: task_index values {sorted(by_index)} are not 0..{len(by_index) - 1}")
    return [by_index[i] for i in range(len(by_index))]


def read_stats(root: Path) -> dict[str, dict[str, Any]] | None:
    path = root / STATS_PATH
    return fmt.read_json(path) if path.exists() else None
