"""SO-101 leader and follower arms on a Feetech bus, implementing the ArmDriver seam.

Opening an arm checks that every servo answers (one error listing all missing
ones), writes the calibration's homing offsets and limits into servos whose
EEPROM disagrees, then configures the role: the leader goes limp so a hand can
move it; the follower gets LeRobot's SO-101 position gains (P=16, I=0, D=32)
and holds its present pose before torque is enabled, so it never jumps.
A tick costs one SYNC_READ (read_joints) or one SYNC_WRITE (write_goal).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from operating_platform.hardware.base import SO101_JOINT_NAMES
from operating_platform.hardware.feetech.bus import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, FeetechBus
from operating_platform.hardware.feetech.control_table import DEFAULT_BAUDRATE, OPERATING_MODE_POSITION
from operating_platform.hardware.feetech.protocol import FeetechError, FeetechMissingServoError

from .calibration import ArmCalibration

logger = logging.getLogger(__name__)

SO101_IDS = dict(zip(SO101_JOINT_NAMES, range(1, 7)))  # servo id per joint as the SO-101 is assembled
FOLLOWER_GAINS = {"P_Coefficient": 16, "I_Coefficient": 0, "D_Coefficient": 32}


def require_servos(bus: FeetechBus, ids_by_joint: dict[str, int], role: str) -> None:
    """PING every servo; one error listing all that are silent, so a loose cable is found in one try."""
    missing = []
    for name, servo_id in ids_by_joint.items():
        try:
            bus.ping(servo_id)
        except FeetechMissingServoError:
            missing.append((servo_id, name))
    if missing:
        listed = ", ".join(f"id {servo_id} ({name})" for servo_id, name in missing)
        raise FeetechMissingServoError(
            f"{role} arm: servo(s) {listed} do not answer PING; "
            "check the 3-pin cables, the power supply and that this is the right port",
            bus.port,
            servo_id=missing[0][0] if len(missing) == 1 else None,
        )


class SO101Arm:
    """Shared by both roles: bus, calibration, reading joints."""

    role = "arm"

    def __init__(
        self,
        port: str,
        calibration: ArmCalibration | str | os.PathLike,
        baudrate: int = DEFAULT_BAUDRATE,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
    ):
        if not isinstance(calibration, ArmCalibration):
            calibration = ArmCalibration.load(calibration)
        self.calibration = calibration
        self.joint_names = list(calibration.joint_names)
        self._ids = list(calibration.ids)
        self.bus = FeetechBus(port, baudrate=baudrate, timeout_s=timeout_s, retries=retries)
        try:
            require_servos(self.bus, dict(zip(self.joint_names, self._ids)), self.role)
            self._write_calibration()
            self._configure()
        except BaseException:
            self.bus.close()
            raise

    @property
    def port(self) -> str:
        return self.bus.port

    def read_joints(self) -> np.ndarray:
        raw = self.bus.sync_read("Present_Position", self._ids)
        return self.calibration.raw_to_user([raw[servo_id] for servo_id in self._ids])

    def close(self) -> None:
        self.bus.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _write_calibration(self) -> None:
        """Servos apply the homing offset themselves; EEPROM is only rewritten when it differs."""
        for motor in self.calibration.motors.values():
            wanted = {
                "Homing_Offset": motor.homing_offset,
                "Min_Position_Limit": motor.range_min,
                "Max_Position_Limit": motor.range_max,
            }
            stale = {name: value for name, value in wanted.items() if self.bus.read(name, motor.id) != value}
            if stale:
                self.bus.write("Torque_Enable", motor.id, 0)
                self.bus.write("Lock", motor.id, 0)
                for name, value in stale.items():
                    self.bus.write(name, motor.id, value)

    def _configure(self) -> None:
        raise NotImplementedError


class SO101Leader(SO101Arm):
    """The arm a person moves: torque off, positions read every tick."""

    role = "leader"

    def _configure(self) -> None:
        for servo_id in self._ids:
            self.bus.write("Torque_Enable", servo_id, 0)

    def write_goal(self, goal: np.ndarray) -> None:
        raise RuntimeError(f"leader arm on {self.port} is torque-off and does not take goal positions")


class SO101Follower(SO101Arm):
    """The arm that reproduces the leader's `joint` (or a policy's `action`) with torque on."""

    role = "follower"

    def _configure(self) -> None:
        for servo_id in self._ids:
            self.bus.write("Torque_Enable", servo_id, 0)
            self.bus.write("Lock", servo_id, 0)
            self.bus.write("Operating_Mode", servo_id, OPERATING_MODE_POSITION)
            for name, value in FOLLOWER_GAINS.items():
                self.bus.write(name, servo_id, value)
        present = self.bus.sync_read("Present_Position", self._ids)
        self.bus.sync_write("Goal_Position", present)
        for servo_id in self._ids:
            self.bus.write("Torque_Enable", servo_id, 1)
            self.bus.write("Lock", servo_id, 1)

    def write_goal(self, goal: np.ndarray) -> None:
        raw = self.calibration.user_to_raw(goal)
        self.bus.sync_write("Goal_Position", dict(zip(self._ids, (int(v) for v in raw))))

    def close(self) -> None:
        """Release torque like LeRobot's default, so a stopped recording leaves the arm movable by hand."""
        try:
            for servo_id in self._ids:
                self.bus.write("Torque_Enable", servo_id, 0)
        except FeetechError as exc:
            logger.warning("could not release follower torque on close: %s", exc)
        finally:
            super().close()

