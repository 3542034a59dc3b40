"""OpenCVCamera: USB cameras (index, /dev/video*, /dev/v4l/by-path/...) and video files as a CameraSource.

Live devices get the requested width/height/fps and report what the driver
actually granted (width/height/fps attributes). Video files (any format PyAV/FFmpeg
decodes: AV1 as datasets are recorded, H.264, HEVC, VP9, MJPEG...) play at their own
frame rate (read() waits for the next frame's time, like a camera) and, with
loop=True (the default), start over at the end; loop=False ends with
CameraReadError. Frames are RGB.

On a read failure the camera is released and reopened with exponential
backoff; meanwhile read() raises CameraReadError saying how long frames have
been missing. When frames come back the gap is logged and kept in `gaps`.
It never returns a made-up frame: a black frame recorded as if it were real
would silently corrupt a dataset.
"""

from __future__ import annotations

import logging
import os
import stat
import time

import cv2
import numpy as np

from operating_platform.hardware.base import CameraReadError

logger = logging.getLogger(__name__)


class CameraOpenError(RuntimeError):
    """The camera or video file cannot be opened at start-up (names the device and why)."""


class OpenCVCamera:
    def __init__(
        self,
        device: str | int,
        width: int | None = None,
        height: int | None = None,
        fps: int | None = None,
        loop: bool = True,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 2.0,
    ):
        self.device = str(device)
        self.requested = (width, height, fps)
        self.loop = loop
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.gaps: list[float] = []  # seconds without frames, one entry per recovered outage
        self.frames_read = 0
        self._target, self._api, self.is_file = _resolve(self.device)
        self._cap: cv2.VideoCapture | None = None
        self._pending: np.ndarray | None = None
        self._down_since: float | None = None
        self._backoff_s = backoff_initial_s
        self._next_attempt = 0.0
        self._next_due: float | None = None
        reason = self._open()
        if reason:
            raise CameraOpenError(f"camera {self.device}: {reason}")

    # -- CameraSource ----------------------------------------------------------

    def read(self) -> np.ndarray:
        if self._cap is None:
            self._reconnect()
        frame = self._pending
        self._pending = None
        if frame is None:
            ok, frame = self._cap.read()
            if not ok and self.is_file and self.loop:
                reason = self._open()  # start the file over
                if reason:
                    self._fail(reason)
                frame, self._pending = self._pending, None
            elif not ok:
                if self.is_file:
                    raise CameraReadError(f"camera {self.device}: end of video file after {self.frames_read} frames")
                self._fail("read failed (unplugged or stalled)")
        self._pace()
        self.frames_read += 1
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    # -- internals ---------------------------------------------------------------

    def _open(self) -> str | None:
        """(Re)open and grab the first frame; returns why it failed, or None."""
        self.close()
        # Files are decoded with PyAV: OpenCV's bundled FFmpeg cannot decode AV1, the codec
        # datasets are recorded in, so a recorded episode would not play as a camera file.
        cap = PyAVFileCapture(self._target) if self.is_file else cv2.VideoCapture(self._target, self._api)
        if not cap.isOpened():
            cap.release()
            return "cannot open (no such device, busy, or unreadable file)"
        width, height, fps = self.requested
        if not self.is_file:
            for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height), (cv2.CAP_PROP_FPS, fps)):
                if value:
                    cap.set(prop, value)
        ok, frame = cap.read()
        if not ok or frame is None:
            cap.release()
            return "opened but delivered no frame"
        self._cap, self._pending = cap, frame
        self.height, self.width = frame.shape[:2]
        self.fps = int(round(cap.get(cv2.CAP_PROP_FPS))) or fps or 30
        granted = (self.width, self.height, self.fps)
        if not self.is_file and any(r and r != g for r, g in zip(self.requested, granted)):
            logger.warning("camera %s: requested %s, device gives %s (width, height, fps)", self.device, self.requested, granted)
        return None

    def _fail(self, reason: str):
        now = time.monotonic()
        self.close()
        if self._down_since is None:
            self._down_since = now
            self._backoff_s = self.backoff_initial_s
        self._next_attempt = now + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, self.backoff_max_s)
        raise CameraReadError(
            f"camera {self.device}: {reason}; no frame for {now - self._down_since:.2f} s, "
            f"reconnecting in {self._next_attempt - now:.2f} s"
        )

    def _reconnect(self) -> None:
        if self._down_since is None:  # closed by the caller rather than failed
            self._down_since = time.monotonic()
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, 1.0 / self.fps))  # a caller polling in a loop is paced, not spinning
            if self._next_attempt > time.monotonic():
                raise CameraReadError(
                    f"camera {self.device}: disconnected for {time.monotonic() - self._down_since:.2f} s, "
                    f"next reconnect attempt in {self._next_attempt - time.monotonic():.2f} s"
                )
        reason = self._open()
        if reason:
            self._fail(reason)
        gap = time.monotonic() - self._down_since
        self.gaps.append(gap)
        self._down_since = None
        self._next_due = None
        logger.warning("camera %s: reconnected after %.2f s without frames", self.device, gap)

    def _pace(self) -> None:
        """Video files deliver at their own fps, as a camera would; devices pace themselves."""
        if not self.is_file:
            return
        now = time.monotonic()
        if self._next_due is None or now - self._next_due > 1.0:  # first frame, or the caller fell far behind
            self._next_due = now
        elif self._next_due > now:
            time.sleep(self._next_due - now)
        self._next_due += 1.0 / self.fps


class PyAVFileCapture:
    """The part of cv2.VideoCapture the camera uses (isOpened/read/get fps/release), for video files via PyAV."""

    def __init__(self, path: str):
        import av

        try:
            self._container = av.open(path)
            self._stream = self._container.streams.video[0]
            self._frames = self._container.decode(self._stream)
        except (av.error.FFmpegError, IndexError, UnicodeDecodeError):
            self._container = None

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoCapture's name
        return self._container is not None

    def read(self) -> tuple[bool, np.ndarray | None]:
        import av

        try:
            return True, next(self._frames).to_ndarray(format="bgr24")
        except (StopIteration, av.error.FFmpegError):
            return False, None

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FPS and self._stream.average_rate:
            return float(self._stream.average_rate)
        return 0.0

    def release(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


def _resolve(device: str) -> tuple[str | int, int, bool]:
    """(what to pass to VideoCapture, backend, is a file) for an index, a device path or a video file."""
    if device.isdigit():
        return int(device), cv2.CAP_V4L2, False
    if not os.path.exists(device):
        raise CameraOpenError(f"camera {device}: no such device or file")
    real = os.path.realpath(device)  # /dev/v4l/by-path/... links to /dev/videoN
    if stat.S_ISCHR(os.stat(real).st_mode):
        return real, cv2.CAP_V4L2, False
    return real, cv2.CAP_FFMPEG, True
