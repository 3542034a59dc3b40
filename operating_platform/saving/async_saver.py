"""AsyncEpisodeSaver: commits sealed episodes on one background thread, in order.

What the caller hands over is an ended on-disk spool (see dataset/spool.py), so a
submission costs no copy and the caller cannot mutate it afterwards — isolation by
ownership rather than by deep copy. A full queue blocks the caller with a visible
warning rather than dropping or reordering an episode: a pending episode costs only
disk, and a synchronous fallback would commit it ahead of the queued ones.
A save that keeps failing is retried with exponential backoff, then reported failed;
its frames stay in the spool, and the log line says where. Every episode queued after it
is then held, not committed: it keeps its index and waits in the spool, and the next open
of the dataset commits them all in order (see writer.py, "Order policy").
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from operating_platform.dataset.writer import SavingStoppedError

logger = logging.getLogger("AsyncEpisodeSaver")
PREFIX = "[AsyncEpisodeSaver]"

_STOP = object()


class SaveTimeoutError(TimeoutError):
    """An episode's save ran past `save_timeout`."""


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


@dataclass
class _Task:
    episode_index: int
    buffer: Any
    submitted_at: float


class AsyncEpisodeSaver:
    def __init__(
        self,
        dataset,
        max_queue_size: int = 10,
        save_timeout: float = 300.0,
        max_retries: int = 3,
        retry_backoff_s: float = 0.5,
    ):
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {max_queue_size}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.dataset = dataset
        self.max_queue_size = max_queue_size
        self.save_timeout = save_timeout
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue_size)
        self._results: queue.Queue[EpisodeSaveResult] = queue.Queue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._running = True
        self.total_submitted = self.total_completed = self.total_failed = self.total_held = self.total_retries = 0
        self.last_error: str | None = None
        self._worker = threading.Thread(target=self._save_worker, name="AsyncEpisodeSaver-Worker", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ caller side

    def submit_episode(self, episode_buffer, episode_index: int) -> bool:
        """Queue a sealed episode. Blocks (with a warning) while the queue is full; never drops.

        Returns False only when the saver is stopped: the caller then saves synchronously.
        """
        if not self._running:
            return False
        task = _Task(episode_index, episode_buffer, time.time())
        try:
            self.queue.put_nowait(task)
        except queue.Full:
            logger.warning(
                "%s ⚠ Save queue full (%d episodes pending); recording waits until episode %d can be queued",
                PREFIX, self.max_queue_size, episode_index,
            )
            started = time.monotonic()
            self.queue.put(task)
            logger.warning("%s queue slot free after %.1fs", PREFIX, time.monotonic() - started)
        with self._lock:
            self.total_submitted += 1
        logger.info("%s ✓ Queued episode %d (queue size: %d)", PREFIX, episode_index, self.queue.qsize())
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
        """True once every submitted episode is saved or failed; False on timeout."""
        with self._lock:
            pending = self._pending()
        if pending:
            logger.info("%s Waiting for %d pending saves...", PREFIX, pending)
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        with self._idle:
            while self._pending() > 0:
                if not self._worker.is_alive():
                    logger.error("%s worker died with %d saves pending", PREFIX, self._pending())
                    return False
                remaining = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        if pending:
            logger.info("%s All saves completed in %.2fs", PREFIX, time.monotonic() - started)
        return True

    def get_status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "is_running": self._running,
                "total_submitted": self.total_submitted,
                "total_completed": self.total_completed,
                "total_failed": self.total_failed,
                "total_held": self.total_held,
                "total_retries": self.total_retries,
                "queue_size": self.queue.qsize(),
                "pending_tasks": self._pending(),
                "last_error": self.last_error,
                "worker_alive": self._worker.is_alive(),
            }

    def stop(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop accepting episodes; with `wait`, save everything queued first."""
        if not self._running:
            return
        self._running = False
        if wait:
            self.wait_for_completion(timeout)
        else:
            self._stopping.set()
        self.queue.put(_STOP)
        self._worker.join(timeout)
        status = self.get_status()
        logger.info(
            "%s Save stats: queued=%d completed=%d failed=%d held=%d",
            PREFIX, status["total_submitted"], status["total_completed"], status["total_failed"], status["total_held"],
        )

    # ------------------------------------------------------------------ worker side

    def _save_worker(self) -> None:
        while True:
            task = self.queue.get()
            if task is _STOP:
                return
            if self._stopping.is_set():
                error = "saver stopped before this episode was saved"
                self.dataset.abandon_saved_episode(task.buffer, error, task.episode_index)
                self._finish(task, self._failure(task, error, 0, time.monotonic()))
                continue
            self._finish(task, self._execute_save(task))

    def _execute_save(self, task: _Task) -> EpisodeSaveResult:
        started = time.monotonic()
        logger.info("%s Starting to save episode %d", PREFIX, task.episode_index)
        for attempt in range(1, self.max_retries + 2):
            deadline_at = time.monotonic() + self.save_timeout

            def deadline() -> None:
                if time.monotonic() > deadline_at:
                    raise SaveTimeoutError(f"save of episode {task.episode_index} exceeded save_timeout={self.save_timeout}s")

            try:
                self.dataset.commit_saved_episode(task.buffer, deadline)
            except SavingStoppedError as e:  # an earlier save failed: wait behind it, untried
                return self._held(task, str(e), started)
            except Exception as e:  # noqa: BLE001 - every failure is retried, then reported
                error = f"{type(e).__name__}: {e}"
                with self._lock:
                    self.last_error = error
                if attempt > self.max_retries:
                    self.dataset.abandon_saved_episode(task.buffer, error, task.episode_index)
                    return self._failure(task, error, attempt, started)
                backoff = self.retry_backoff_s * 2 ** (attempt - 1)
                with self._lock:
                    self.total_retries += 1
                logger.warning(
                    "%s episode %d save attempt %d/%d failed (%s); retrying in %.1fs",
                    PREFIX, task.episode_index, attempt, self.max_retries + 1, error, backoff,
                )
                if self._stopping.wait(backoff):
                    self.dataset.abandon_saved_episode(task.buffer, error, task.episode_index)
                    return self._failure(task, error, attempt, started)
                continue
            duration = time.monotonic() - started
            logger.info("%s Episode %d saved successfully in %.2fs", PREFIX, task.episode_index, duration)
            return EpisodeSaveResult(task.episode_index, True, None, attempt, duration, task.submitted_at, time.time())
        raise AssertionError("unreachable")

    def _failure(self, task: _Task, error: str, attempts: int, started: float) -> EpisodeSaveResult:
        spool = str(getattr(task.buffer, "path", "")) or None
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
                                 time.time(), str(task.buffer.path), held=True)

    def _finish(self, task: _Task, result: EpisodeSaveResult) -> None:
        self._results.put(result)
        with self._idle:
            if result.success:
                self.total_completed += 1
            elif result.held:
                self.total_held += 1
            else:
                self.total_failed += 1
            self._idle.notify_all()
