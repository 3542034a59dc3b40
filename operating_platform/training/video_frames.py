"""Random access to video frames by timestamp, with open decoders cached per file.

Training reads frames in shuffled order from many files; opening a decoder per read
would cost more than the decode, so the last `max_open_files` stay open (least recently
used closed first). Caches are per process: a worker started by fork never reuses its
parent's open files.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from operating_platform.dataset.video import VideoDecoder, VideoFrameError

__all__ = ["VideoFrameError", "VideoFrameReader"]


class VideoFrameReader:
    def __init__(self, tolerance_s: float = 1e-4, max_open_files: int = 16):
        self.tolerance_s = tolerance_s
        self.max_open_files = max_open_files
        self._open: OrderedDict[Path, VideoDecoder] = OrderedDict()
        self._pid = os.getpid()

    def __getstate__(self):  # caches never travel to another process
        return {"tolerance_s": self.tolerance_s, "max_open_files": self.max_open_files}

    def __setstate__(self, state):
        self.__init__(**state)

    def _video(self, path: Path) -> VideoDecoder:
        if self._pid != os.getpid():
            self._open.clear()  # forked: the parent's decoders are not ours to use (or close)
            self._pid = os.getpid()
        video = self._open.get(path)
        if video is None:
            video = VideoDecoder(path, self.tolerance_s)
            self._open[path] = video
            while len(self._open) > self.max_open_files:
                self._open.popitem(last=False)[1].close()
        self._open.move_to_end(path)
        return video

    def frame_at(self, path: Path, timestamp: float) -> np.ndarray:
        """RGB uint8 (h, w, 3) of the frame shown at `timestamp` seconds."""
        return self._video(Path(path)).frame_at(timestamp)

    def close(self) -> None:
        for video in self._open.values():
            video.close()
        self._open.clear()
