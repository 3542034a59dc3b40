"""Roll a dataset back to its last commit point (info.json) after a crash.

Whatever a killed process left past the totals in info.json — half-written files in
.staging/, temp files, episode files renamed in but not yet in the metadata, JSONL
lines written before info.json — is removed, so the dataset validates again and
recording resumes at episode `total_episodes`. Spooled frames are not touched here:
the writer commits them again afterwards.

Older versions could also leave metadata rows repeated (a retried save appended its rows
again) or missing. Those are repaired from the episode files themselves: of repeated rows the
one whose length matches the parquet stays; a missing row is rebuilt from the parquet (and the
videos, for image stats). What cannot be rebuilt is named, and the validator fails on it.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections import defaultdict
from contextlib import closing
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from . import format as fmt
from .info import DatasetInfo
from .stats import image_stats, vector_stats
from .video import iter_video_frames

logger = logging.getLogger(__name__)

_EPISODE_FILE = re.compile(r"episode_(\d{6})\.(parquet|mp4)$")


def repair_dataset(root: Path, info: DatasetInfo) -> list[str]:
    """Returns what was repaired, one line each (also logged)."""
    actions: list[str] = []
    committed = info.total_episodes

    staging = root / fmt.STAGING_DIR
    if staging.exists() and any(staging.iterdir()):
        actions.append(f"removed unfinished files in {staging}")
    shutil.rmtree(staging, ignore_errors=True)

    for tmp in root.rglob("*" + fmt.TEMP_SUFFIX):
        if fmt.SPOOL_DIR not in tmp.relative_to(root).parts:
            tmp.unlink()
            actions.append(f"removed temp file {tmp}")

    actions += [f"removed uncommitted {p}" for p in remove_uncommitted_episode_files(root, committed)]

    # JSONL files are replaced atomically, so they are whole; they may only be ahead of info.json.
    for rel, keep in (
        (fmt.EPISODES_PATH, lambda r: r["episode_index"] < committed),
        (fmt.EPISODES_STATS_PATH, lambda r: r["episode_index"] < committed),
        (fmt.TASKS_PATH, lambda r: r["task_index"] < info.total_tasks),
    ):
        path = root / rel
        rows = fmt.read_jsonl(path)
        kept = [r for r in rows if keep(r)]
        if len(kept) != len(rows):
            fmt.write_jsonl_atomic(path, kept)
            actions.append(f"trimmed {path} to the committed {len(kept)} entries")

    actions += repair_metadata_rows(root, info)
    for line in actions:
        logger.warning("repair %s: %s", root, line)
    return actions


def repair_metadata_rows(root: Path, info: DatasetInfo) -> list[str]:
    """One row per committed episode in episodes.jsonl and episodes_stats.jsonl, one per task in tasks.jsonl."""
    actions: list[str] = []
    committed = info.total_episodes
    task_rows = fmt.read_jsonl(root / fmt.TASKS_PATH)
    unique_tasks = list({(r["task_index"], r["task"]): r for r in task_rows}.values())
    if len(unique_tasks) != len(task_rows):
        fmt.write_jsonl_atomic(root / fmt.TASKS_PATH, sorted(unique_tasks, key=lambda r: r["task_index"]))
        actions.append(f"removed {len(task_rows) - len(unique_tasks)} repeated row(s) of {fmt.TASKS_PATH}")
    tasks = {r["task_index"]: r["task"] for r in unique_tasks}

    lengths = {}
    for ep in range(committed):
        path = root / info.data_path(ep)
        lengths[ep] = pq.read_metadata(path).num_rows if path.exists() else None

    def row_length(rel: str, row: dict) -> int | None:
        if rel == fmt.EPISODES_PATH:
            return row.get("length")
        counts = row.get("stats", {}).get("index", {}).get("count")
        return counts[0] if counts else None

    for rel, rebuild in ((fmt.EPISODES_PATH, _episode_row), (fmt.EPISODES_STATS_PATH, _stats_row)):
        rows = fmt.read_jsonl(root / rel)
        by_index = defaultdict(list)
        for row in rows:
            by_index[row["episode_index"]].append(row)
        kept, repeated, rebuilt, unrepairable = [], [], [], []
        for ep in range(committed):
            candidates = by_index.get(ep, [])
            if len(candidates) > 1:
                repeated.append(ep)
                matching = [r for r in candidates if row_length(rel, r) == lengths[ep]]
                kept.append((matching or candidates)[-1])
            elif candidates:
                kept.append(candidates[0])
            elif lengths[ep] is not None:
                kept.append(rebuild(root, info, ep, tasks))
                rebuilt.append(ep)
            else:
                unrepairable.append(ep)
        if repeated or rebuilt or kept != rows:
            fmt.write_jsonl_atomic(root / rel, kept)
        if repeated:
            actions.append(f"{rel}: kept one row of each repeated episode {', '.join(map(str, repeated))}")
        if rebuilt:
            actions.append(f"{rel}: rebuilt the missing row(s) of episode {', '.join(map(str, rebuilt))} from its files")
        if unrepairable:
            actions.append(f"{rel}: episode(s) {', '.join(map(str, unrepairable))} have no row and no parquet; "
                           f"they cannot be rebuilt (scripts/validate_dataset_format.py --target {root} names them)")
    return actions


def _episode_row(root: Path, info: DatasetInfo, ep: int, tasks: dict[int, str]) -> dict:
    table = pq.read_table(root / info.data_path(ep), columns=["task_index"])
    order = list(dict.fromkeys(table.column("task_index").to_pylist()))
    return {"episode_index": ep, "tasks": [tasks[i] for i in order], "length": table.num_rows}


def _stats_row(root: Path, info: DatasetInfo, ep: int, tasks: dict[int, str]) -> dict:
    table = pq.read_table(root / info.data_path(ep))
    stats = {name: vector_stats(np.array(table.column(name).to_pylist())) for name in table.column_names}
    for key in info.video_keys:
        with closing(iter_video_frames(root / info.video_path(key, ep))) as frames:
            stats[key] = image_stats(_ForwardReader(frames).frame, table.num_rows)
    return {"episode_index": ep, "stats": stats}


class _ForwardReader:
    """Frame i of a stream of frames, for increasing i, each decoded once."""

    def __init__(self, frames):
        self._frames, self._next, self._last = frames, 0, None

    def frame(self, index: int) -> np.ndarray:
        while self._next <= index:
            self._last = next(self._frames)
            self._next += 1
        return self._last


def remove_uncommitted_episode_files(root: Path, committed: int) -> list[Path]:
    """Delete episode files numbered at or past `committed` (moved in by a commit that never finished)."""
    removed = []
    for sub in ("data", "videos"):
        for path in sorted((root / sub).rglob("episode_*")):
            m = _EPISODE_FILE.search(path.name)
            if m and int(m.group(1)) >= committed:
                path.unlink()
                removed.append(path)
    return removed
