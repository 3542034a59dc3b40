"""Keep encoder threads at normal scheduling priority.

SVT-AV1 (libsvtav1, LeRobot's default codec) switches the thread that opens an encoder to
SCHED_FIFO priority 99 when the process runs as root (containers, CI), and the encoder threads
it then creates inherit that. Real-time encoding on a 2-core machine starves the cameras,
the recorder and dora itself; every process forked from such a thread is real-time too.
"""

from __future__ import annotations

import contextlib
import os

_REAL_TIME = {getattr(os, "SCHED_FIFO", -1), getattr(os, "SCHED_RR", -1)}


def _threads() -> dict[int, int]:
    """{thread id: scheduling policy} of this process's threads (those still alive)."""
    policies = {}
    for tid in map(int, os.listdir("/proc/self/task")):
        with contextlib.suppress(OSError):
            policies[tid] = os.sched_getscheduler(tid)
    return policies


@contextlib.contextmanager
def no_real_time_promotion():
    """Threads that become real-time inside the block (and new real-time ones) go back to SCHED_OTHER."""
    if not hasattr(os, "sched_getscheduler") or not os.path.isdir("/proc/self/task"):
        yield
        return
    before = _threads()
    try:
        yield
    finally:
        for tid, policy in _threads().items():
            if policy in _REAL_TIME and before.get(tid) not in _REAL_TIME:
                with contextlib.suppress(OSError):
                    os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
