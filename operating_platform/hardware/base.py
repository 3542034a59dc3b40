"""The seams between node logic and devices.

Nodes talk to arms and cameras only through these protocols, so the simulated
devices (operating_platform/simulation/) and the real ones (so101/, cameras/opencv.py)
are interchangeable and node logic is testable without hardware.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

SO101_JOINT_NAMES: list[str] = [
    "shoulder_pan",
    "shoulder_lift",
    "elbow_flex",
    "wrist_flex",
    "wrist_roll",
    "gripper",
]


class CameraReadError(RuntimeError):
    """A camera could not deliver a frame; callers skip the frame, never fabricate one."""


@runtime_checkable
class ArmDriver(Protocol):
    """An arm as the dataflow sees it: joint positions in degrees, gripper 0-100."""

    joint_names: list[str]

    def read_joints(self) -> np.ndarray:
        """Current positions, float32, one value per joint_names entry."""
        ...

    def write_goal(self, goal: np.ndarray) -> None:
        """Command goal positions (same units and order as read_joints)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class CameraSource(Protocol):
    """A frame source: read() returns (height, width, 3) uint8 RGB or raises CameraReadError."""

    width: int
    height: int
    fps: int

    def read(self) -> np.ndarray: ...

    def close(self) -> None: ...
