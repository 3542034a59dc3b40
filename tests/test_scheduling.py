"""SVT-AV1 makes the thread that opens an encoder SCHED_FIFO 99 when run as root (CI, containers):
a real-time encoder, and every process forked from its thread, starves a 2-core machine (a CI run
hung 80 min in a vfork whose child never got the CPU back from real-time busy loops)."""

import os
import threading

import numpy as np
import pytest

from operating_platform.dataset.scheduling import no_real_time_promotion
from operating_platform.dataset.video import VideoEncoding, VideoFileWriter

REAL_TIME = {os.SCHED_FIFO, os.SCHED_RR}


def real_time_threads() -> list[int]:
    return [int(t) for t in os.listdir("/proc/self/task") if os.sched_getscheduler(int(t)) in REAL_TIME]


@pytest.mark.parametrize("vcodec", ["libsvtav1", "libx264"])
def test_encoding_leaves_no_thread_real_time(tmp_path, vcodec):
    writer = VideoFileWriter(tmp_path / "a.mp4", 64, 48, 30, VideoEncoding(vcodec=vcodec))
    for _ in range(5):
        writer.write(np.zeros((48, 64, 3), np.uint8))
        assert real_time_threads() == []
    assert writer.close() == 5
    assert real_time_threads() == []


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may make a thread real-time")
def test_threads_made_real_time_inside_the_block_are_put_back():
    started, stop = threading.Event(), threading.Event()

    def worker():
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        started.set()
        stop.wait(10)

    with no_real_time_promotion():
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(5))
        thread = threading.Thread(target=worker)
        thread.start()
        started.wait(10)
    try:
        assert real_time_threads() == []
    finally:
        stop.set()
        thread.join(10)
