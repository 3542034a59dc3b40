"""Convert between LeRobot v2.1 and v3.0, losslessly and without re-encoding video.

v2.1 -> v3.0: the v2.1 dataset *is* what the packer takes as input (the per-episode store),
so it is linked (or copied) into DST/.episodes/ and packed: rows are copied unchanged,
video packets remuxed. v3.0 -> v2.1: each episode's rows are taken out of its shared parquet
(values unchanged, the v2.1 column types), and its video segment cut out on its first
packet, a keyframe because every episode was encoded on its own.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import format as fmt
from ..info import DatasetInfo, Feature
from ..parquet import episode_table, write_table_durably
from . import layout
from .pack import pack, store_root
from .remux import cut_video


def _check_destination(dst: Path) -> None:
    if dst.exists() and any(dst.iterdir()):
        raise FileExistsError(f"{dst} exists and is not empty; choose a new destination")


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # the packer only reads and then unlinks its input
    except OSError:
        shutil.copy2(src, dst)


def v21_to_v30(src: Path, dst: Path, *, data_files_size_in_mb: float = layout.DEFAULT_DATA_FILE_SIZE_IN_MB,
               video_files_size_in_mb: float = layout.DEFAULT_VIDEO_FILE_SIZE_IN_MB) -> DatasetInfo:
    src, dst = Path(src), Path(dst)
    info = DatasetInfo.load(src, fmt.CODEBASE_VERSION)
    _check_destination(dst)
    store = store_root(dst)
    for sub in ("data", "videos"):
        for path in sorted((src / sub).rglob("*")):
            if path.is_file() and not path.name.endswith(fmt.TEMP_SUFFIX):
                _link_or_copy(path, store / path.relative_to(src))
    (store / "meta").mkdir(parents=True, exist_ok=True)
    for rel in (fmt.EPISODES_PATH, fmt.EPISODES_STATS_PATH, fmt.TASKS_PATH, fmt.INFO_PATH):
        shutil.copy2(src / rel, store / rel)  # the store's info.json last: it is the store's commit point
    DatasetInfo.new(layout.CODEBASE_VERSION, info.fps, info.features, info.robot_type, info.chunks_size,
                    data_files_size_in_mb, video_files_size_in_mb).write(dst)
    pack(dst)
    shutil.rmtree(store)  # everything is packed; a later open seeds a fresh store
    return DatasetInfo.load(dst, layout.CODEBASE_VERSION)


def v30_to_v21(src: Path, dst: Path) -> DatasetInfo:
    src, dst = Path(src), Path(dst)
    info = DatasetInfo.load(src, layout.CODEBASE_VERSION)
    _check_destination(dst)
    features, fps = info.features, info.fps
    out = DatasetInfo.new(fmt.CODEBASE_VERSION, fps, features, info.robot_type, info.chunks_size)
    episodes = layout.read_episodes(src)
    tables: dict[Path, object] = {}
    frames = 0
    for e in episodes:
        ep = e["episode_index"]
        path = src / info.data_path(chunk=e["data/chunk_index"], file=e["data/file_index"])
        if path not in tables:
            tables[path] = pq.read_table(path)
        rows = tables[path].filter(pc.equal(tables[path].column("episode_index"), ep))
        if rows.num_rows != e["length"]:
            raise fmt.DatasetFormatError(f"{path}: {rows.num_rows} rows of episode {ep}, its length is {e['length']}")
        values = {k: _values(rows.column(k), features[k]) for k in info.parquet_columns}
        write_table_durably(episode_table(values, features), dst / out.data_path(ep))
        for key in info.video_keys:
            chunk_col, file_col, from_col, _ = layout.video_columns(key)
            cut_video(src / info.video_path(key, chunk=e[chunk_col], file=e[file_col]), round(e[from_col] * fps),
                      e["length"], dst / out.video_path(key, ep), fps)
        frames += e["length"]
    tasks = layout.read_tasks(src)
    fmt.write_jsonl_atomic(dst / fmt.TASKS_PATH, [{"task_index": i, "task": t} for i, t in enumerate(tasks)])
    fmt.write_jsonl_atomic(dst / fmt.EPISODES_PATH, [{"episode_index": e["episode_index"], "tasks": list(e["tasks"]),
                                                      "length": e["length"]} for e in episodes])
    fmt.write_jsonl_atomic(dst / fmt.EPISODES_STATS_PATH, [{"episode_index": e["episode_index"],
                                                            "stats": layout.episode_stats_of(e)} for e in episodes])
    out = out.with_totals(len(episodes), frames, len(tasks))
    out.write(dst)
    return out


def _values(column, ft: Feature) -> np.ndarray:
    column = column.combine_chunks()
    if ft.shape == (1,):
        return column.to_numpy(zero_copy_only=False)
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(len(column), *ft.shape)


def convert(src: Path | str, dst: Path | str, to: str, **options) -> DatasetInfo:
    """Convert the dataset at `src` into a new one at `dst` in format `to` (v3.0 or v2.1)."""
    fmt.check_codebase_version(to, "--to")
    have = DatasetInfo.load(src).codebase_version
    if have == to:
        raise fmt.DatasetFormatError(f"{src} is already a LeRobot {to} dataset")
    return v21_to_v30(Path(src), Path(dst), **options) if to == fmt.V30 else v30_to_v21(Path(src), Path(dst))
