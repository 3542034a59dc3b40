"""Check an SO-101 setup before a dataflow starts: calibration files, ports, servos, cameras.

Inside a running dataflow a bad port surfaces as a node's traceback among many
log lines; checked here first, the operator gets one message listing every
problem (each naming file and field, port and servo id, or camera). Nothing is
written to the servos and no torque is enabled.
"""

from __future__ import annotations

from pathlib import Path

from operating_platform.hardware.cameras.opencv import CameraOpenError, OpenCVCamera
from operating_platform.hardware.feetech.bus import FeetechBus
from operating_platform.hardware.feetech.protocol import FeetechError, FeetechMissingServoError

from .arm import SO101_IDS, require_servos
from .calibration import ArmCalibration, CalibrationError, calibration_path


class HardwareCheckError(RuntimeError):
    """One or more devices are not usable; the message has one line per problem."""


def check_so101_setup(
    leader_port: str,
    follower_port: str,
    calibration_dir: str | Path = "calibration",
    cameras: dict[str, str] | None = None,
) -> None:
    """Raise HardwareCheckError listing every problem found, or return if all devices answer."""
    problems = []
    for role, port in (("leader", leader_port), ("follower", follower_port)):
        ids = SO101_IDS
        try:
            calibration = ArmCalibration.load(calibration_path(calibration_dir, f"so101_{role}"))
            ids = dict(zip(calibration.joint_names, calibration.ids))
        except CalibrationError as exc:
            problems.append(f"{role} arm: {exc}")
        try:
            with FeetechBus(port) as bus:
                require_servos(bus, ids, role)
        except FeetechMissingServoError as exc:
            problems.append(str(exc))  # already says which arm
        except FeetechError as exc:
            problems.append(f"{role} arm: {exc}")
    problems += _camera_problems(cameras or {})
    if problems:
        raise HardwareCheckError("SO-101 setup check failed:\n  " + "\n  ".join(problems))


def check_camera_sources(cameras: dict[str, str]) -> None:
    """Raise HardwareCheckError if any OpenCV camera source (device or file) cannot be opened."""
    if problems := _camera_problems(cameras):
        raise HardwareCheckError("camera check failed:\n  " + "\n  ".join(problems))


def _camera_problems(cameras: dict[str, str]) -> list[str]:
    problems = []
    for name, device in cameras.items():
        try:
            OpenCVCamera(device).close()
        except CameraOpenError as exc:
            problems.append(f"camera {name}: {exc}")
    return problems
