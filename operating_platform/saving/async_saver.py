"""AsyncEpisodeSaver: commits sealed episodes on one background thread, in order.

The saver knows nothing of datasets: it is given what it calls, `commit(buffer, index,
deadline)` and `abandon(buffer, error, index)`, and owns the thread that calls them.
What the caller hands over is an ended on-disk spool (see dataset/spool.py), so a
submission costs no copy and the caller cannot mutate it afterwards — isolation by
ownership rather than by deep copy. A full queue blocks the caller with a visible
warning rather than dropping or reordering an episode: a pending episode costs only
disk, and a synchronous fallback would commit it ahead of the queued ones.
A save that keeps failing is retried with exponential backoff, then abandoned and
reported failed; its frames stay in the spool, and the log line says where. A commit that
raises `EpisodeHeld` was not tried (an earlier save failed): the episode keeps its index
and waits in the spool for the next open of the dataset (see writer.py, "Order policy").

Who touches what (everything shared is read and written under `_lock`):
  state                              caller thread(s)                worker thread
  _accepting, _closed                submit (read), stop (write)     -
  _submitting                        submit, stop                    -
  total_submitted                    submit                          -
  _queued (tasks not yet taken)      submit, status                  run loop
  total_completed/failed/held,       status, wait_for_completion     _finish, _execute_save
    total_retries, last_error
  _slots (free places in the queue)  submit (acquire)                run loop (release)
  queue (tasks, then the sentinel)   submit / stop put, under _lock  run loop takes
  _results                           get_results takes               _finish puts
  _stopping (Event)                  stop sets                       run loop, backoff wait
A task is put on the queue under `_lock` only while `_closed` is false, and stop() sets
`_closed` and puts the sentinel under the same lock: a submit racing stop() is either
queued before the sentinel (saved, or abandoned and reported) or refused (returns False).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

logger = logging.getLogger("AsyncEpisodeSaver")
PREFIX = "[AsyncEpisodeSaver]"

_STOP = object()
SLOT_POLL_S = 0.5  # a submit waiting for a queue slot looks this often whether the saver was stopped

Deadline = Callable[[], None]
CommitFn = Callable[[Any, int, Deadline], None]
AbandonFn = Callable[[Any, str, int], None]


class SaveTimeoutError(TimeoutError):
    """An episode's save ran past `save_timeout`."""


class EpisodeHeld(RuntimeError):
    """Raised by a commit function: the episode was kept, not tried (an earlier save failed)."""


@dataclass
class EpisodeSaveResult:
    episode_index: int
    success: bool
    error: str | None
    attempts: int
    duration_s: float
    submitted_at: float
    completed_at: float
    spool_path: str | None = None  # where the frames are, when the save failed
    held: bool = False  # not tried: an earlier save failed; committed by the next open

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SaveQueueStatus:
    """The saver's counters at one moment (the default: no saver running)."""

    is_running: bool = False
    total_submitted: int = 0
    total_completed: int = 0
    total_failed: int = 0
    total_held: int = 0
    total_retries: int = 0
    queue_size: int = 0
    pending_tasks: int = 0
    last_error: str | None = None
    worker_alive: bool = False


@dataclass
class _Task:
    episode_index: int
    buffer: Any
    submitted_at: float


# The async-save defaults, written once: the writer and the dataflow settings schema take them from here.
DEFAULT_MAX_QUEUE_SIZE = 10
DEFAULT_SAVE_TIMEOUT_S = 300.0
DEFAULT_MAX_RETRIES = 3


class AsyncEpisodeSaver:
    def __init__(
        self,
        commit: CommitFn | Any,
        abandon: AbandonFn | None = None,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        save_timeout: float = DEFAULT_SAVE_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_backoff_s: float = 0.5,
    ):
        """`AsyncEpisodeSaver(commit, abandon, ...)`; the reference form `AsyncEpisodeSaver(dataset, ...)`
        takes the two from what has them (`commit_saved_episode`, `abandon_saved_episode`)."""
        if abandon is None:
            commit, abandon = commit.commit_saved_episode, commit.abandon_saved_episode
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {max_queue_size}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self._commit = commit
        self._abandon = abandon
        self.max_queue_size = max_queue_size
        self.save_timeout = save_timeout
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self.queue: queue.Queue = queue.Queue()  # bounded by _slots, so the sentinel always fits
        self._slots = threading.Semaphore(max_queue_size)
        self._results: queue.Queue[EpisodeSaveResult] = queue.Queue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._accepting = True
        self._closed = False
        self._submitting = 0
        self._queued = 0  # tasks on the queue, not yet taken by the worker
        self.total_submitted = self.total_completed = self.total_failed = self.total_held = self.total_retries = 0
        self.last_error: str | None = None
        self._worker = threading.Thread(target=self._save_worker, name="AsyncEpisodeSaver-Worker", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ caller side

    def submit_episode(self, episode_buffer, episode_index: int) -> bool:
        """Queue a sealed episode under `episode_index`. Blocks (with a warning) while the queue is full; never drops.

        Returns False when the saver is stopped (or stops while this waits): the caller then saves synchronously.
        """
        with self._lock:
            if not self._accepting:
                return False
            self._submitting += 1
        try:
            if not self._take_slot(episode_index):
                return False
            with self._lock:
                if self._closed:  # stop() gave up waiting and put the sentinel: refuse rather than land after it
                    self._slots.release()
                    return False
                self.total_submitted += 1
                self._queued += 1
                self.queue.put_nowait(_Task(episode_index, episode_buffer, time.time()))
        finally:
            with self._idle:
                self._submitting -= 1
                self._idle.notify_all()
        logger.info("%s ✓ Queued episode %d", PREFIX, episode_index)
        return True

    def _take_slot(self, episode_index: int) -> bool:
        if self._slots.acquire(blocking=False):
            return True
        logger.warning(
            "%s ⚠ Save queue full (%d episodes pending); recording waits until episode %d can be queued",
            PREFIX, self.max_queue_size, episode_index,
        )
        started = time.monotonic()
        while not self._slots.acquire(timeout=SLOT_POLL_S):
            if self._closed:
                return False
        logger.warning("%s queue slot free after %.1fs", PREFIX, time.monotonic() - started)
        return True

    def get_results(self, timeout: float = 0.0) -> list[EpisodeSaveResult]:
        """Results finished since the last call; waits up to `timeout` for the first one."""
        results = []
        try:
            results.append(self._results.get(timeout=timeout) if timeout > 0 else self._results.get_nowait())
            while True:
                results.append(self._results.get_nowait())
        except queue.Empty:
            pass
        return results

    def _pending(self) -> int:
        return self.total_submitted - self.total_completed - self.total_failed - self.total_held

    def wait_for_completion(self, timeout: float | None = None) -> bool:
        """True once every submitted episode is saved or failed; False on timeout (or a dead worker)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._pending() > 0:
                if not self._worker.is_alive():
                    logger.error("%s worker died with %d saves pending", PREFIX, self._pending())
                    return False
                remaining = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def status(self) -> SaveQueueStatus:
        with self._lock:
            return SaveQueueStatus(
                is_running=self._accepting,
                total_submitted=self.total_submitted,
                total_completed=self.total_completed,
                total_failed=self.total_failed,
                total_held=self.total_held,
                total_retries=self.total_retries,
                queue_size=self._queued,
                pending_tasks=self._pending(),
                last_error=self.last_error,
                worker_alive=self._worker.is_alive(),
            )

    def get_status(self) -> dict[str, Any]:
        """`status()` as a dict (the reference API's name and keys)."""
        return asdict(self.status())

    @property
    def is_running(self) -> bool:
        with self._lock:
            return self._accepting

    def stop(self, wait: bool = True, timeout: float | None = None) -> bool:
        """Stop accepting episodes; with `wait`, save everything queued first. Takes at most `timeout` in all.

        Returns True when every submitted episode was saved or reported and the worker has ended.
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        with self._lock:
            if not self._accepting:
                return not self._worker.is_alive()
            self._accepting = False
        if not wait:
            self._stopping.set()  # the worker abandons (and reports) what is still queued
        with self._idle:  # submits already admitted land before the sentinel (or are refused below)
            while self._submitting and (deadline is None or time.monotonic() < deadline):
                self._idle.wait(0.1 if deadline is None else min(0.1, remaining()))
        if wait:
            self.wait_for_completion(remaining())
        with self._lock:
            self._closed = True
            self.queue.put_nowait(_STOP)
        self._worker.join(remaining())
        with self._lock:
            return self._pending() == 0 and not self._worker.is_alive()

    # ------------------------------------------------------------------ worker side

    def _save_worker(self) -> None:
        while True:
            task = self.queue.get()
            if task is _STOP:
                return
            with self._lock:
                self._queued -= 1
            self._slots.release()
            if self._stopping.is_set():
                error = "saver stopped before this episode was saved"
                self._abandon(task.buffer, error, task.episode_index)
                self._finish(self._failure(task, error, 0, time.monotonic()))
                continue
            self._finish(self._execute_save(task))

    def _execute_save(self, task: _Task) -> EpisodeSaveResult:
        started = time.monotonic()
        logger.info("%s Starting to save episode %d", PREFIX, task.episode_index)
        for attempt in range(1, self.max_retries + 2):
            deadline_at = time.monotonic() + self.save_timeout

            def deadline() -> None:
                if time.monotonic() > deadline_at:
                    raise SaveTimeoutError(f"save of episode {task.episode_index} exceeded save_timeout={self.save_timeout}s")

            try:
                self._commit(task.buffer, task.episode_index, deadline)
            except EpisodeHeld as e:  # an earlier save failed: wait behind it, untried
                return self._held(task, str(e), started)
            except Exception as e:  # noqa: BLE001 - every failure is retried, then reported
                error = f"{type(e).__name__}: {e}"
                with self._lock:
                    self.last_error = error
                if attempt > self.max_retries:
                    self._abandon(task.buffer, error, task.episode_index)
                    return self._failure(task, error, attempt, started)
                backoff = self.retry_backoff_s * 2 ** (attempt - 1)
                with self._lock:
                    self.total_retries += 1
                logger.warning(
                    "%s episode %d save attempt %d/%d failed (%s); retrying in %.1fs",
                    PREFIX, task.episode_index, attempt, self.max_retries + 1, error, backoff,
                )
                if self._stopping.wait(backoff):
                    self._abandon(task.buffer, error, task.episode_index)
                    return self._failure(task, error, attempt, started)
                continue
            duration = time.monotonic() - started
            logger.info("%s Episode %d saved successfully in %.2fs", PREFIX, task.episode_index, duration)
            return EpisodeSaveResult(task.episode_index, True, None, attempt, duration, task.submitted_at, time.time())
        raise AssertionError("unreachable")

    def _failure(self, task: _Task, error: str, attempts: int, started: float) -> EpisodeSaveResult:
        spool = _spool_path(task.buffer)
        logger.error(
            "%s ✗ Episode %d failed after %d retries: %s — its frames are kept in %s "
            "(committed on the next open of the dataset)",
            PREFIX, task.episode_index, max(attempts - 1, 0), error, spool,
        )
        return EpisodeSaveResult(
            task.episode_index, False, error, attempts, time.monotonic() - started, task.submitted_at, time.time(), spool
        )

    def _held(self, task: _Task, reason: str, started: float) -> EpisodeSaveResult:
        logger.error("%s ✗ Episode %d not saved: %s", PREFIX, task.episode_index, reason)
        return EpisodeSaveResult(task.episode_index, False, reason, 0, time.monotonic() - started, task.submitted_at,
                                 time.time(), _spool_path(task.buffer), held=True)

    def _finish(self, result: EpisodeSaveResult) -> None:
        self._results.put(result)
        with self._idle:
            if result.success:
                self.total_completed += 1
            elif result.held:
                self.total_held += 1
            else:
                self.total_failed += 1
            self._idle.notify_all()


def _spool_path(buffer: Any) -> str | None:
    return str(getattr(buffer, "path", "")) or None
