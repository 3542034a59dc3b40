"""Recording a LeRobot v3.0 dataset: the common writer commits each episode into the hidden
store (.episodes/, durable per episode, crash-safe as v2.1 is), and pack.py moves committed
episodes into the shared v3.0 files at close, at every open, and on demand (`pack()`).

So everything the writer promises (async save returning at once, live encoding, retries,
in-order commits, resume refusing mismatches) holds unchanged; LeRobot sees an episode
once it is packed, and an open of ours after a crash packs every committed one.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import format as fmt
from ..info import DatasetInfo
from . import layout
from .pack import PackResult, drop_packed_from_store, finish_interrupted_pack, pack, store_root

logger = logging.getLogger(__name__)


class V30Dataset:
    """A v3.0 dataset being recorded; the recording API is the store writer's (delegated)."""

    codebase_version = layout.CODEBASE_VERSION

    def __init__(self, root: Path, store):
        self._root = Path(root)
        self._store = store
        store.dataset_root = self._root
        self.last_pack: PackResult | None = None
        self.pack_error: str | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "_store":
            raise AttributeError(name)
        return getattr(self._store, name)

    @property
    def root(self) -> Path:
        return self._root

    @property
    def store(self):
        """The per-episode writer (its root is the hidden store)."""
        return self._store

    def pack(self) -> PackResult | None:
        """Pack what is committed so far (while recording: call between episodes' commits).

        A storage fault (disk full, no permission) is reported, not raised: every committed
        episode stays safe in the store (a pack lands whole or not at all), and the next open
        or scripts/pack_dataset.py finishes it. `pack_error` says so until a pack succeeds.
        """
        try:
            self.last_pack = pack(self._root)
        except OSError as e:
            self.pack_error = (f"{self._root}: committed episodes could not be packed into the v3.0 files "
                               f"({e.strerror or e}); they are safe in {store_root(self._root)} but LeRobot does not "
                               f"see them yet; once the fault is fixed run: python scripts/pack_dataset.py {self._root}")
            logger.error("%s", self.pack_error)
            return None
        self.pack_error = None
        return self.last_pack

    def storage_status(self):
        return replace(self._store.storage_status(), pack_error=self.pack_error)

    def close(self, timeout: float | None = None) -> None:
        try:
            self._store.close(timeout)
        finally:
            self.pack()

    finalize = close

    def __enter__(self) -> "V30Dataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def create_v30(writer_cls, repo_id: str, root: Path, fps: int, features: dict, robot_type: str | None,
               chunks_size: int, use_async_saver: bool, **options: Any) -> V30Dataset:
    """A new, empty v3.0 dataset at `root` (already checked to be empty)."""
    sizes = {k: options.pop(k) for k in ("data_files_size_in_mb", "video_files_size_in_mb") if k in options}
    root.mkdir(parents=True, exist_ok=True)
    DatasetInfo.new(layout.CODEBASE_VERSION, fps, features, robot_type, chunks_size, **sizes).write(root)
    return open_v30(writer_cls, root, repo_id=repo_id, use_async_saver=use_async_saver, **options)


def open_v30(writer_cls, root: Path, *, use_async_saver: bool = True, **options: Any) -> V30Dataset:
    """Resume a v3.0 dataset: finish an interrupted pack, let the writer repair and recover
    the store, pack every committed episode. Also opens v3.0 datasets written by others
    (or by our converter): a missing store is seeded from the packed metadata."""
    finish_interrupted_pack(root)
    info = DatasetInfo.load(root, layout.CODEBASE_VERSION)
    store = store_root(root)
    if not (store / fmt.INFO_PATH).exists():
        _seed_store(root, info)
    elif DatasetInfo.load(store, fmt.CODEBASE_VERSION).total_episodes < info.total_episodes:
        # Episodes were appended by another writer (LeRobot's own, say): continue after them.
        logger.warning("%s: the dataset has episodes its store never saw; continuing at episode %d",
                       root, info.total_episodes)
        _seed_store(root, info)
    drop_packed_from_store(root, info.total_episodes)
    ds = writer_cls.open(store, use_async_saver=False, **options)
    result = pack(root)
    if use_async_saver:
        ds.start_async_saver()
    out = V30Dataset(root, ds)
    out.last_pack = result
    return out


def _seed_store(root: Path, info: DatasetInfo) -> None:
    """An empty store continuing the packed dataset: same features, totals and task indices."""
    store = store_root(root)
    tasks = layout.read_tasks(root)
    fmt.write_jsonl_atomic(store / fmt.TASKS_PATH, [{"task_index": i, "task": t} for i, t in enumerate(tasks)])
    store_info = DatasetInfo.new(fmt.CODEBASE_VERSION, info.fps, info.features, info.robot_type, info.chunks_size)
    store_info.with_totals(info.total_episodes, info.total_frames, len(tasks)).write(store)
