"""Pack committed episodes into LeRobot v3.0's shared files, surviving SIGKILL at any moment.

Why two stages: an episode is durable the moment the common writer commits it as its own
parquet + mp4s in the hidden store (.episodes/, a v2.1 dataset); appending it to a shared
file at once would rewrite an ever-growing file per episode, and a file LeRobot globs
could be caught half-written. So episodes are packed in batches (at close, at open, or on
demand): each target file — the last shared file with the new episodes appended (while
under data_files_size_in_mb / video_files_size_in_mb), or a new one — is written whole in
.pack/staging/ (parquet row groups and video packets copied, nothing re-encoded), then a
journal naming every file and the new info.json is written atomically, then the files
are renamed in and info.json (the commit point) replaced. A crash before the journal
leaves the dataset untouched (the staging is dropped); after it, the next open redoes the
renames (idempotent). Packed episodes are then removed from the store.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .. import format as fmt
from ..info import DatasetInfo
from ..stats import aggregate_stats
from . import layout
from .remux import concat_videos

logger = logging.getLogger(__name__)

MB = 1024**2  # LeRobot's "MB"


@dataclass
class PackResult:
    episodes: int  # episodes packed by this call
    files_written: int
    bytes_written: int
    seconds: float


@dataclass
class _Target:
    """One shared file being (re)written: the episodes it gains, and the file it extends."""

    chunk_file: tuple[int, int]
    base: Path | None  # the existing shared file whose content comes first, if extended
    base_frames: int  # frames already in `base`
    episodes: list[int]


def store_root(root: Path) -> Path:
    return Path(root) / layout.STORE_DIR


def pack(root: Path | str) -> PackResult:
    """Pack every episode committed in the store but not yet in info.json."""
    root = Path(root)
    start = time.monotonic()
    finish_interrupted_pack(root)
    info = DatasetInfo.load(root, layout.CODEBASE_VERSION)
    store_info = DatasetInfo.load(store_root(root), fmt.CODEBASE_VERSION)
    first, end = info.total_episodes, store_info.total_episodes
    result = PackResult(0, 0, 0, 0.0)
    if end > first:
        journal = _stage(root, info, store_info, first, end)
        result.files_written = len(journal["files"])
        result.bytes_written = sum((root / layout.PACK_DIR / "staging" / rel).stat().st_size for rel in journal["files"])
        _apply(root, journal)
        result.episodes = end - first
        logger.info("packed episodes %d..%d of %s into %d files", first, end - 1, root, result.files_written)
    drop_packed_from_store(root, DatasetInfo.load(root, layout.CODEBASE_VERSION).total_episodes)
    result.seconds = time.monotonic() - start
    return result


def finish_interrupted_pack(root: Path) -> None:
    """Redo a pack whose journal was written; forget one that never got that far."""
    pack_dir = root / layout.PACK_DIR
    journal = pack_dir / layout.PACK_JOURNAL
    if journal.exists():
        logger.warning("%s: finishing an interrupted pack", root)
        _apply(root, fmt.read_json(journal), str(journal))
    elif pack_dir.exists():
        shutil.rmtree(pack_dir)


def drop_packed_from_store(root: Path, packed: int) -> None:
    """Remove the store's own files of episodes now in the shared files (kept until then)."""
    store = store_root(root)
    for sub, pattern in (("data", "chunk-*/episode_*.parquet"), ("videos", "chunk-*/*/episode_*.mp4")):
        for path in (store / sub).glob(pattern):
            if int(path.stem.split("_")[1]) < packed:
                path.unlink()


# --------------------------------------------------------------------------- staging


def _stage(root: Path, info: DatasetInfo, store_info: DatasetInfo, first: int, end: int) -> dict:
    store = store_root(root)
    staging = root / layout.PACK_DIR / "staging"
    shutil.rmtree(root / layout.PACK_DIR, ignore_errors=True)
    staging.mkdir(parents=True)
    chunks_size, fps = info.chunks_size, info.fps
    episodes = {r["episode_index"]: r for r in fmt.read_jsonl(store / fmt.EPISODES_PATH) if first <= r["episode_index"] < end}
    ep_stats = {r["episode_index"]: r["stats"] for r in fmt.read_jsonl(store / fmt.EPISODES_STATS_PATH)
                if first <= r["episode_index"] < end}
    missing = sorted(set(range(first, end)) - set(episodes) - set(ep_stats))
    if missing or len(episodes) != end - first or len(ep_stats) != end - first:
        raise fmt.DatasetFormatError(f"{store}: metadata of episodes {missing or list(range(first, end))} is missing; cannot pack")
    lengths = {ep: int(episodes[ep]["length"]) for ep in range(first, end)}
    last = _last_episode_row(root)
    files: list[str] = []
    rows = {ep: {"episode_index": ep, "tasks": list(episodes[ep]["tasks"]), "length": lengths[ep]} for ep in range(first, end)}

    # data
    data_files = {ep: store / store_info.data_path(ep) for ep in range(first, end)}
    base = (last["data/chunk_index"], last["data/file_index"]) if last else None
    frame = info.total_frames
    for target in _assign(root, base, 0, data_files, info.data_path, info.data_files_size_in_mb, chunks_size, lengths):
        rel = info.data_path(chunk=target.chunk_file[0], file=target.chunk_file[1])
        _write_data_file(target, data_files, staging / rel)
        files.append(rel)
        for ep in target.episodes:
            rows[ep].update({"data/chunk_index": target.chunk_file[0], "data/file_index": target.chunk_file[1],
                             "dataset_from_index": frame, "dataset_to_index": frame + lengths[ep]})
            frame += lengths[ep]

    # videos
    for key in store_info.video_keys:
        videos = {ep: store / store_info.video_path(key, ep) for ep in range(first, end)}
        chunk_col, file_col, from_col, to_col = layout.video_columns(key)
        base = (last[chunk_col], last[file_col]) if last else None
        base_frames = round(last[to_col] * fps) if last else 0
        for target in _assign(root, base, base_frames, videos, partial(info.video_path, key),
                              info.video_files_size_in_mb, chunks_size, lengths):
            rel = info.video_path(key, chunk=target.chunk_file[0], file=target.chunk_file[1])
            sources = ([(target.base, target.base_frames)] if target.base else []) + [(videos[ep], lengths[ep]) for ep in target.episodes]
            concat_videos(sources, staging / rel, fps)
            files.append(rel)
            at = target.base_frames
            for ep in target.episodes:
                rows[ep].update({chunk_col: target.chunk_file[0], file_col: target.chunk_file[1],
                                 from_col: at / fps, to_col: (at + lengths[ep]) / fps})
                at += lengths[ep]

    # episode rows (stats after the locations, as LeRobot orders its columns)
    for ep in range(first, end):
        for feature, by_stat in ep_stats[ep].items():
            for stat in layout.STAT_NAMES:
                rows[ep][layout.stats_column(feature, stat)] = by_stat[stat]
    meta_base = (last["meta/episodes/chunk_index"], last["meta/episodes/file_index"]) if last else None
    old_rows: list[dict] = []
    if meta_base is None:
        meta_at = (0, 0)
    elif (root / layout.episodes_relpath(*meta_base)).stat().st_size >= info.data_files_size_in_mb * MB:
        meta_at = layout.next_file(*meta_base, chunks_size)
    else:
        meta_at = meta_base
        old_rows = pq.read_table(root / layout.episodes_relpath(*meta_base)).to_pylist()
    for ep in range(first, end):
        rows[ep]["meta/episodes/chunk_index"], rows[ep]["meta/episodes/file_index"] = meta_at
    rel = layout.episodes_relpath(*meta_at)
    _write_parquet(pa.Table.from_pylist(old_rows + [rows[ep] for ep in range(first, end)]), staging / rel)
    files.append(rel)

    tasks = [t["task"] for t in sorted(fmt.read_jsonl(store / fmt.TASKS_PATH), key=lambda t: t["task_index"])]
    _write_parquet(layout.tasks_table(tasks), staging / layout.TASKS_PATH)
    files.append(layout.TASKS_PATH)

    previous = layout.read_stats(root)
    stats = aggregate_stats(([previous] if previous and first > 0 else []) + [ep_stats[ep] for ep in range(first, end)])
    fmt.write_json_atomic(staging / layout.STATS_PATH, stats)
    files.append(layout.STATS_PATH)

    new_info = info.with_features(store_info.features).with_totals(end, frame, len(tasks))
    journal = {"episodes": [first, end], "files": files, "info": new_info.to_json()}
    fmt.fsync_dir(staging)
    fmt.write_json_atomic(root / layout.PACK_DIR / layout.PACK_JOURNAL, journal)  # the pack is decided
    return journal


def _last_episode_row(root: Path) -> dict | None:
    paths = sorted((root / layout.EPISODES_DIR).glob("*/*.parquet"))
    if not paths:
        return None
    table = pq.read_table(paths[-1])
    return table.slice(table.num_rows - 1).to_pylist()[0] if table.num_rows else None


def _assign(root, base, base_frames, sources: dict[int, Path], path_of, limit_mb, chunks_size, lengths) -> list[_Target]:
    """Episodes to shared files in order: extend the last file while it stays under the size limit."""
    targets: list[_Target] = []
    limit = limit_mb * MB
    if base is not None:
        base_path = root / path_of(chunk=base[0], file=base[1])
        current = _Target(base, base_path, base_frames, [])
        size = base_path.stat().st_size
    else:
        current, size = None, 0
    for ep in sorted(sources):
        ep_size = sources[ep].stat().st_size
        if current is None:
            current, size = _Target((0, 0), None, 0, []), 0
        elif size + ep_size >= limit and size > 0:
            if current.episodes:
                targets.append(current)
            current, size = _Target(layout.next_file(*current.chunk_file, chunks_size), None, 0, []), 0
        current.episodes.append(ep)
        size += ep_size
    if current is not None and current.episodes:
        targets.append(current)
    return targets


def _write_data_file(target: _Target, data_files: dict[int, Path], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        if target.base is not None:
            base = pq.ParquetFile(target.base)
            writer = pq.ParquetWriter(out, base.schema_arrow)
            for i in range(base.num_row_groups):
                writer.write_table(base.read_row_group(i))
        for ep in target.episodes:
            table = pq.read_table(data_files[ep])
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema)
            writer.write_table(table.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()
    fmt.fsync_file(out)


def _write_parquet(table: pa.Table, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    fmt.fsync_file(out)


# --------------------------------------------------------------------------- commit


def _apply(root: Path, journal: dict, where: str = layout.PACK_JOURNAL) -> None:
    staging = root / layout.PACK_DIR / "staging"
    for rel in journal["files"]:
        src, dst = staging / rel, root / rel
        if src.exists():  # else renamed in before a crash
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            fmt.fsync_dir(dst.parent)
    DatasetInfo.from_json(journal["info"], f"{where}: info", layout.CODEBASE_VERSION).write(root)  # the commit point
    shutil.rmtree(root / layout.PACK_DIR)
