"""Arm node logic: publish the arm's `joint` every tick; a follower also obeys the `action` it receives."""

from __future__ import annotations

import os
import time
from typing import Callable

from operating_platform.hardware.base import ArmDriver

from .messages import MessageError, decode_joint, encode_joint
from .problems import ProblemLog
from .settings import EnvSettings

Emit = Callable[[str, object, dict], None]
ARM_DRIVERS = ("sim", "so101")
ARM_ROLES = ("leader", "follower")


class ArmPublisher:
    """Reads joints on tick (a failed read is counted and skipped); forwards valid goals to the driver."""

    def __init__(self, driver: ArmDriver, emit: Emit, role: str = "leader",
                 clock_ns: Callable[[], int] = time.time_ns):
        self.driver = driver
        self.role = role
        self._emit = emit
        self._clock_ns = clock_ns
        self.seq = 0
        self.goals_applied = 0
        self.problems = ProblemLog(f"arm_{role}")

    def on_tick(self) -> None:
        try:
            positions = self.driver.read_joints()
        except Exception as exc:  # a bus glitch must not take the arm node down; it is counted and logged
            self.problems.report("read", exc)
            return
        self.seq += 1
        value, metadata = encode_joint(positions, self.driver.joint_names, self.seq, self._clock_ns())
        self._emit("joint", value, metadata)

    def on_action(self, value: object, metadata: dict | None) -> None:
        try:
            goal = decode_joint(value, metadata, expected_names=self.driver.joint_names)
        except MessageError as exc:
            self.problems.report("action", exc)
            return
        try:
            self.driver.write_goal(goal.positions)
        except Exception as exc:  # as for reads: count, log, keep the loop alive
            self.problems.report("write", exc)
            return
        self.goals_applied += 1

    def close(self) -> None:
        self.driver.close()


def arm_from_env(env: dict[str, str] = os.environ) -> ArmDriver:
    """ARM_DRIVER (sim|so101), ARM_ROLE (leader|follower), ARM_PORT, ARM_CALIBRATION (json file)."""
    s = EnvSettings(env, "arm")
    driver, role = s.arm_driver, s.arm_role
    if role not in ARM_ROLES:
        raise ValueError(f"arm: ARM_ROLE={role!r}, expected one of {ARM_ROLES}")
    if driver == "sim":
        from operating_platform.simulation.arm import SimFollowerArm, SimLeaderArm

        return SimLeaderArm(s.arm_name or role) if role == "leader" else SimFollowerArm()
    if driver == "so101":
        port, calibration = s.arm_port, s.arm_calibration
        if not port or not calibration:
            raise ValueError(f"arm {role}: ARM_DRIVER=so101 needs ARM_PORT and ARM_CALIBRATION (got {port!r}, {calibration!r})")
        from operating_platform.hardware.so101.arm import SO101Follower, SO101Leader

        return (SO101Leader if role == "leader" else SO101Follower)(port, calibration)
    raise ValueError(f"arm {role}: ARM_DRIVER={driver!r}, expected one of {ARM_DRIVERS}")
