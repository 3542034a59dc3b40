"""Random access to video frames by timestamp, with open decoders cached per file.

Training reads frames in shuffled order, so each read seeks to the keyframe before
the wanted timestamp and decodes forward; a read just after the previous one in the
same file decodes forward without seeking. The frame returned must lie within
`tolerance_s` of the asked timestamp (as LeRobot checks), otherwise the error names
the file, the timestamp and the nearest frame found. Caches are per process: a
worker started by fork never reuses its parent's open files.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# decode forward instead of seeking when the target is at most this far ahead
_FORWARD_WINDOW_S = 0.25


class VideoFrameError(RuntimeError):
    """A video frame at the asked timestamp is missing or cannot be decoded."""


class _OpenVideo:
    def __init__(self, path: Path):
        try:
            self.container = av.open(str(path))
        except (OSError, av.FFmpegError) as e:
            raise VideoFrameError(f"{path}: cannot open video ({e})") from e
        if not self.container.streams.video:
            self.container.close()
            raise VideoFrameError(f"{path}: no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.time_base: Fraction = self.stream.time_base
        self.frames = None  # decoder generator positioned after `last_time`
        self.last_time: float | None = None
        self.last_frame: np.ndarray | None = None

    def close(self) -> None:
        self.container.close()


class VideoFrameReader:
    def __init__(self, tolerance_s: float = 1e-4, max_open_files: int = 16):
        self.tolerance_s = tolerance_s
        self.max_open_files = max_open_files
        self._open: OrderedDict[Path, _OpenVideo] = OrderedDict()
        self._pid = os.getpid()

    def __getstate__(self):  # caches never travel to another process
        return {"tolerance_s": self.tolerance_s, "max_open_files": self.max_open_files}

    def __setstate__(self, state):
        self.__init__(**state)

    def _video(self, path: Path) -> _OpenVideo:
        if self._pid != os.getpid():
            self._open.clear()  # forked: the parent's decoders are not ours to use (or close)
            self._pid = os.getpid()
        video = self._open.get(path)
        if video is None:
            video = _OpenVideo(path)
            self._open[path] = video
            while len(self._open) > self.max_open_files:
                self._open.popitem(last=False)[1].close()
        self._open.move_to_end(path)
        return video

    def frame_at(self, path: Path, timestamp: float) -> np.ndarray:
        """RGB uint8 (h, w, 3) of the frame shown at `timestamp` seconds."""
        video = self._video(Path(path))
        tol = self.tolerance_s
        if video.last_time is not None and abs(video.last_time - timestamp) <= tol:
            return video.last_frame
        try:
            ahead = video.last_time is not None and 0 < timestamp - video.last_time <= _FORWARD_WINDOW_S
            if not ahead:
                video.container.seek(int(timestamp / video.time_base), stream=video.stream, backward=True, any_frame=False)
                video.frames = video.container.decode(video.stream)
                video.last_time = None
            nearest = None
            for frame in video.frames:
                if frame.pts is None:
                    continue
                t = float(frame.pts * video.time_base)
                if nearest is None or abs(t - timestamp) < abs(nearest - timestamp):
                    nearest = t
                if t < timestamp - tol:
                    continue
                if t > timestamp + tol:
                    break
                video.last_time, video.last_frame = t, frame.to_ndarray(format="rgb24")
                return video.last_frame
        except av.FFmpegError as e:
            video.frames, video.last_time = None, None
            raise VideoFrameError(f"{path}: decoding at t={timestamp:.6f}s failed ({e})") from e
        video.frames, video.last_time = None, None
        found = "no frame at or after it" if nearest is None else f"nearest frame at {nearest:.6f}s"
        raise VideoFrameError(f"{path}: no frame within {tol}s of t={timestamp:.6f}s ({found})")

    def close(self) -> None:
        for video in self._open.values():
            video.close()
        self._open.clear()
