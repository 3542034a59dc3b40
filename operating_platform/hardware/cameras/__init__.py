"""Camera sources behind the CameraSource seam; the camera node picks one by name."""

from __future__ import annotations

from operating_platform.hardware.base import CameraSource

CAMERA_SOURCES = ("sim", "opencv")


def open_camera(source: str, name: str, device: str = "", width: int = 640, height: int = 480,
                fps: int = 30) -> CameraSource:
    """`sim` needs nothing; `opencv` opens `device` (index, /dev/videoN or a video file).

    OpenCV is imported only when asked for, so the simulated dataflow runs without it.
    """
    if source == "sim":
        from .sim import SimCamera

        return SimCamera(name, width=width, height=height, fps=fps)
    if source == "opencv":
        if not device:
            raise ValueError(f"camera {name!r}: CAMERA_SOURCE=opencv needs CAMERA_DEVICE (index, /dev/videoN or video file)")
        from .opencv import OpenCVCamera

        return OpenCVCamera(device, width=width, height=height, fps=fps)
    raise ValueError(f"camera {name!r}: unknown source {source!r} (expected one of {CAMERA_SOURCES})")
