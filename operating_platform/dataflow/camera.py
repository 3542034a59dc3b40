"""Camera node logic: read a CameraSource on every tick and publish `image`, stamped at capture."""

from __future__ import annotations

import os
import time
from typing import Callable

from operating_platform.hardware.base import CameraReadError, CameraSource

from .messages import encode_image
from .problems import ProblemLog
from .settings import DEFAULTS, EnvSettings

Emit = Callable[[str, object, dict], None]
CAMERA_SOURCES = ("sim", "opencv")


class CameraPublisher:
    """One frame per tick; a failed read publishes nothing (a gap in time, never a made-up frame)."""

    def __init__(self, source: CameraSource, emit: Emit, name: str = "camera",
                 clock_ns: Callable[[], int] = time.time_ns):
        self.source = source
        self.name = name
        self._emit = emit
        self._clock_ns = clock_ns
        self.seq = 0
        self.problems = ProblemLog(f"camera_{name}")

    def on_tick(self) -> None:
        try:
            frame = self.source.read()
        except CameraReadError as exc:
            self.problems.report("read", exc)
            return
        stamp_ns = self._clock_ns()
        self.seq += 1
        value, metadata = encode_image(frame, self.seq, stamp_ns)
        self._emit("image", value, metadata)

    def close(self) -> None:
        self.source.close()


def camera_from_env(env: dict[str, str] = os.environ) -> CameraSource:
    """CAMERA_NAME, CAMERA_SOURCE (sim|opencv), CAMERA_DEVICE, CAMERA_WIDTH/HEIGHT, CAMERA_FPS (else FPS)."""
    name = EnvSettings(env, "camera").camera_name
    s = EnvSettings(env, f"camera_{name}")
    return open_camera(s.camera_source, name=name, device=s.camera_device, width=s.camera_width,
                       height=s.camera_height, fps=s.camera_fps or s.fps)


def open_camera(source: str, name: str, device: str = "", width: int = DEFAULTS.camera_width,
                height: int = DEFAULTS.camera_height, fps: int = DEFAULTS.fps) -> CameraSource:
    """`sim` needs nothing; `opencv` opens `device` (index, /dev/videoN or a video file).

    OpenCV is imported only when asked for, so the simulated dataflow runs without it.
    """
    if source == "sim":
        from operating_platform.simulation.camera import SimCamera

        return SimCamera(name, width=width, height=height, fps=fps)
    if source == "opencv":
        if not device:
            raise ValueError(f"camera {name!r}: CAMERA_SOURCE=opencv needs CAMERA_DEVICE (index, /dev/videoN or video file)")
        from operating_platform.hardware.cameras.opencv import OpenCVCamera

        return OpenCVCamera(device, width=width, height=height, fps=fps)
    raise ValueError(f"camera {name!r}: unknown source {source!r} (expected one of {CAMERA_SOURCES})")
