"""Deterministic, exactly-resumable batch loading with optional worker processes.

Batch k of a process is a pure function of (dataset, seed, k) (sampler.py), so:
- workers may finish in any order: batches are handed out strictly by number;
- the position is one integer (batches handed to the caller, not batches prefetched),
  saved per process in a few hundred bytes and restored without reading anything;
- that position is the iterator's state, a small plain value (get_state/set_state);
  the loader's save/load_dataloader_state write and read it as per-process files, and
  restoring discards in-flight prefetched batches of the old position by generation number.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import queue
import time
import traceback
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import loader_state
from .batch_transport import discard_batch, export_batch, import_batch, make_transport_dir, remove_transport_dir
from .sampler import StreamLayout
from .sources import SampleSource, as_source, collate

PERSISTENT_REQUIRED = "Dataloader must be created with persistent_iterator=True"
_POLL_S = 0.5
_WORKER_PRELOAD = ["operating_platform.training.reader"]  # numpy, av, pyarrow: slow to import per worker


class DataLoaderWorkerError(RuntimeError):
    """A worker process failed to build a batch, or died."""


def _load_batch(dataset: SampleSource, collate_fn: Callable, indices: np.ndarray) -> dict[str, Any]:
    return collate_fn([dataset[int(i)] for i in indices])


def _worker_main(dataset, collate_fn, tasks, results, transport_dir) -> None:
    """Worker process: build the batches it is sent until it receives None."""
    while True:
        task = tasks.get()
        if task is None:
            return
        generation, batch_no, indices = task
        try:
            batch = _load_batch(dataset, collate_fn, indices)
            results.put((generation, batch_no, export_batch(batch, transport_dir, f"{generation}-{batch_no}"), None))
        except Exception as e:  # reported to the consumer with the batch it belongs to
            results.put((generation, batch_no, None, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


class _WorkerPool:
    """Worker processes; batch k always goes to worker k % n, results come back tagged."""

    def __init__(self, dataset, collate_fn, num_workers: int, mp_context: str):
        ctx = mp.get_context(mp_context)
        if mp_context == "forkserver":  # workers fork from a server that already imported the heavy modules
            ctx.set_forkserver_preload(_WORKER_PRELOAD)
        self.results = ctx.Queue()
        self.tasks = [ctx.Queue() for _ in range(num_workers)]
        self.transport_dir = make_transport_dir()
        self.procs = [
            ctx.Process(
                target=_worker_main,
                args=(dataset, collate_fn, q, self.results, self.transport_dir),
                daemon=True,
                name=f"dataloader-worker-{w}",
            )
            for w, q in enumerate(self.tasks)
        ]
        for p in self.procs:
            p.start()
        self._finalizer = weakref.finalize(self, _shutdown, self.procs, self.tasks, self.results, self.transport_dir)

    def submit(self, generation: int, batch_no: int, indices: np.ndarray) -> None:
        self.tasks[batch_no % len(self.tasks)].put((generation, batch_no, indices))

    def receive(self) -> tuple | None:
        try:
            return self.results.get(timeout=_POLL_S)
        except queue.Empty:
            for w, p in enumerate(self.procs):
                if not p.is_alive():
                    raise DataLoaderWorkerError(
                        f"data loader worker {w} (pid {p.pid}) died with exit code {p.exitcode}"
                    ) from None
            return None

    def close(self) -> None:
        self._finalizer()


def _shutdown(procs, tasks, results, transport_dir) -> None:
    for q in tasks:
        try:
            q.put(None)
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + 5.0
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        try:  # a worker exits only once its unread results have left its pipe
            while True:
                results.get_nowait()
        except (queue.Empty, OSError, ValueError):
            pass
        for p in procs:
            p.join(timeout=0.02)
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(timeout=2.0)
    for q in [*tasks, results]:
        q.cancel_join_thread()
        q.close()
    remove_transport_dir(transport_dir)


class _Workers:
    """A loader's worker processes: started on first use, kept across its iterators, serving only the
    newest one (results come back on one queue, so two iterators would take each other's batches)."""

    def __init__(self, dataset, collate_fn, num_workers: int, mp_context: str):
        self.count = num_workers
        self._args = (dataset, collate_fn, num_workers, mp_context)
        self._pool: _WorkerPool | None = None
        self._user: object = None

    def lend_to(self, user: object) -> None:
        self._user = user

    def pool_for(self, user: object) -> _WorkerPool | None:
        """The pool (None without workers); refuses an iterator that a newer one replaced."""
        if user is not self._user:
            raise RuntimeError("this data-loader iterator was replaced by a newer iter(loader); use the new one")
        if self.count and self._pool is None:
            self._pool = _WorkerPool(*self._args)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


class DataLoaderIterator:
    """Hands out batches of one process in order; prefetches through the loader's workers.

    Its state is a small plain value, separate from the data (as Grain's iterators):
    get_state() returns a JSON-ready dict, set_state() on any iterator over the same
    dataset and order continues exactly there, discarding whatever was prefetched.
    """

    _generations = itertools.count(1)

    def __init__(self, dataset: SampleSource, layout: StreamLayout, collate_fn: Callable, workers: _Workers, prefetch: int):
        self._dataset, self._layout, self._collate_fn = dataset, layout, collate_fn
        self._workers = workers
        self._window = workers.count * prefetch  # batches in flight
        self._end = layout.num_batches()
        self._seek(0)
        workers.lend_to(self)

    @property
    def batches_seen(self) -> int:
        """Batches handed to the caller (prefetched ones do not count)."""
        return self._next

    def get_state(self) -> dict[str, Any]:
        return loader_state.LoaderState(self._dataset.fingerprint(), self._layout, self._next).to_json()

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue where `state` stood (also a state of another process count, at a common batch boundary)."""
        saved = loader_state.LoaderState.from_json(state)
        self._seek(loader_state.resume_batch(saved, self._layout, self._dataset.fingerprint()))

    def _seek(self, batch: int) -> None:
        self._generation = next(self._generations)  # results prefetched for the old position are ignored
        self._next = self._submitted_upto = batch  # batches < _submitted_upto were sent in this generation
        self._ready: dict[int, dict | DataLoaderWorkerError] = {}

    def __iter__(self) -> "DataLoaderIterator":
        return self

    def __next__(self) -> dict[str, Any]:
        pool = self._workers.pool_for(self)
        if self._end is not None and self._next >= self._end:
            raise StopIteration
        if pool is None:
            batch = _load_batch(self._dataset, self._collate_fn, self._layout.batch_indices(self._next))
        else:
            batch = self._from_pool(pool)
        self._next += 1
        return batch

    def _from_pool(self, pool: _WorkerPool) -> dict[str, Any]:
        window_end = self._next + self._window
        if self._end is not None:
            window_end = min(window_end, self._end)
        while self._submitted_upto < window_end:
            pool.submit(self._generation, self._submitted_upto, self._layout.batch_indices(self._submitted_upto))
            self._submitted_upto += 1
        while self._next not in self._ready:
            message = pool.receive()
            if message is None:
                continue
            generation, batch_no, batch, error = message
            if generation != self._generation:
                if batch is not None:
                    discard_batch(batch)  # prefetched for a position we no longer want
                continue
            if error is not None:  # raised when (and only if) the caller reaches that batch
                indices = self._layout.batch_indices(batch_no).tolist()
                self._ready[batch_no] = DataLoaderWorkerError(
                    f"data loader worker failed on batch {batch_no} (dataset indices {indices}): {error}"
                )
            else:
                self._ready[batch_no] = import_batch(batch)
        ready = self._ready[self._next]
        if isinstance(ready, DataLoaderWorkerError):
            raise ready  # stays: asking again for this batch fails again instead of waiting forever
        del self._ready[self._next]
        return ready


class DataLoader:
    """See create_data_loader."""

    def __init__(
        self,
        dataset: SampleSource,
        layout: StreamLayout,
        *,
        num_workers: int = 0,
        prefetch: int = 2,
        persistent_iterator: bool = False,
        collate_fn: Callable[[list[dict]], dict] = collate,
        mp_context: str = "forkserver",
    ):
        if num_workers < 0:
            raise ValueError(f"data loader: num_workers must be >= 0, got {num_workers}")
        if prefetch < 1:
            raise ValueError(f"data loader: prefetch must be >= 1, got {prefetch}")
        if len(dataset) != layout.num_samples:
            raise ValueError(f"data loader: layout has {layout.num_samples} samples, dataset {len(dataset)}")
        self.dataset = dataset
        self.layout = layout
        self.num_workers = num_workers
        self.prefetch = prefetch
        self.persistent_iterator = persistent_iterator
        self.collate_fn = collate_fn
        self.mp_context = mp_context
        self._workers = _Workers(dataset, collate_fn, num_workers, mp_context)
        self._persistent = self._new_iterator() if persistent_iterator else None

    # ------------------------------------------------------------------ iteration
    def _new_iterator(self) -> DataLoaderIterator:
        return DataLoaderIterator(self.dataset, self.layout, self.collate_fn, self._workers, self.prefetch)

    def __iter__(self) -> DataLoaderIterator:
        """With persistent_iterator, always the same iterator; otherwise a new one from batch 0."""
        return self._persistent if self._persistent is not None else self._new_iterator()

    def __len__(self) -> int:
        n = self.layout.num_batches()
        if n is None:
            raise TypeError("data loader is infinite (num_epochs=None): it has no length")
        return n

    def close(self) -> None:
        self._workers.close()

    def __enter__(self) -> "DataLoader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ checkpointing
    def get_batches_seen(self) -> int:
        """Batches handed to the caller (prefetched ones do not count)."""
        return self._require_persistent().batches_seen

    def save_dataloader_state(self, directory: str | Path) -> Path:
        """Write this process's state file into `directory`; returns its path."""
        return loader_state.save_state(directory, self._require_persistent().get_state())

    def load_dataloader_state(self, directory: str | Path) -> int:
        """Continue exactly where the saved run stopped; returns batches_seen of this process."""
        iterator = self._require_persistent()
        saved = loader_state.find_state(directory, self.layout.process_index)
        try:
            iterator.set_state(saved.to_json())
        except loader_state.DataLoaderStateError as e:
            raise loader_state.DataLoaderStateError(f"{directory}: {e}") from None
        return iterator.batches_seen

    def _require_persistent(self) -> DataLoaderIterator:
        if self._persistent is None:
            raise RuntimeError(PERSISTENT_REQUIRED)
        return self._persistent


def create_data_loader(
    datasets: SampleSource | Sequence[SampleSource],
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    num_epochs: int | None = None,
    process_index: int = 0,
    process_count: int = 1,
    num_workers: int = 0,
    prefetch: int = 2,
    persistent_iterator: bool = False,
    drop_last: bool = False,
    collate_fn: Callable[[list[dict]], dict] = collate,
    mp_context: str = "forkserver",
) -> DataLoader:
    """A loader over one dataset or several (concatenated).

    `batch_size` is per process; processes take disjoint slices of each global batch.
    `num_epochs=None` repeats forever. `prefetch` is batches in flight per worker.
    With `persistent_iterator=True`, iter(loader) always continues the same stream,
    which is what save/load_dataloader_state checkpoint.
    """
    dataset = as_source(datasets)
    layout = StreamLayout(
        num_samples=len(dataset),
        batch_size=batch_size,
        seed=seed,
        shuffle=shuffle,
        num_epochs=num_epochs,
        process_index=process_index,
        process_count=process_count,
        drop_last=drop_last,
    )
    return DataLoader(
        dataset,
        layout,
        num_workers=num_workers,
        prefetch=prefetch,
        persistent_iterator=persistent_iterator,
        collate_fn=collate_fn,
        mp_context=mp_context,
    )
