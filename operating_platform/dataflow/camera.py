"""Camera node logic: read a CameraSource on every tick and publish `image`, stamped at capture."""

from __future__ import annotations

import os
import time
from typing import Callable

from operating_platform.hardware.base import CameraReadError, CameraSource
from operating_platform.hardware.cameras import open_camera

from .messages import encode_image
from .problems import ProblemLog
from .settings import setting

Emit = Callable[[str, object, dict], None]


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
    name = env.get("CAMERA_NAME", "camera")

    def get(key, cast, default):
        return setting(env, f"camera_{name}", key, cast, default)

    return open_camera(get("CAMERA_SOURCE", str, "sim"), name=name, device=get("CAMERA_DEVICE", str, ""),
                       width=get("CAMERA_WIDTH", int, 640), height=get("CAMERA_HEIGHT", int, 480),
                       fps=get("CAMERA_FPS", int, get("FPS", int, 30)))
