"""Roll a dataset back to its last commit point (info.json) after a crash.

Whatever a killed process left past the totals in info.json — half-written files in
.staging/, temp files, episode files renamed in but not yet in the metadata, JSONL
lines written before info.json — is removed, so the dataset validates again and
recording resumes at episode `total_episodes`. Spooled frames are not touched here:
the writer commits them again afterwards.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from . import format as fmt

logger = logging.getLogger(__name__)

_EPISODE_FILE = re.compile(r"episode_(\d{6})\.(parquet|mp4)$")


def repair_dataset(root: Path, info: dict) -> list[str]:
    """Returns what was repaired, one line each (also logged)."""
    actions: list[str] = []
    committed = info["total_episodes"]

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
        (fmt.TASKS_PATH, lambda r: r["task_index"] < info["total_tasks"]),
    ):
        path = root / rel
        rows = fmt.read_jsonl(path)
        kept = [r for r in rows if keep(r)]
        if len(kept) != len(rows):
            fmt.write_jsonl_atomic(path, kept)
            actions.append(f"trimmed {path} to the committed {len(kept)} entries")

    for line in actions:
        logger.warning("repair %s: %s", root, line)
    return actions


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
