"""Simulated SO-101 arms, so the whole dataflow runs (and is tested) with no hardware.

The leader follows smooth, bounded joint trajectories like a person teleoperating;
the follower chases the goal it is given with a first-order lag and a velocity
limit, like servos do, so `action` and `observation.state` differ realistically.
"""

from __future__ import annotations

import time
import zlib
from typing import Callable

import numpy as np

from operating_platform.hardware.base import SO101_JOINT_NAMES

# (low, high) in degrees per joint; the gripper is 0 (closed) .. 100 (open).
SO101_LIMITS = np.array(
    [(-110, 110), (-100, 100), (-100, 100), (-100, 100), (-160, 160), (0, 100)], dtype=np.float32
)
HOME = np.array([0, -20, 30, 40, 0, 20], dtype=np.float32)
SWING = np.array([45, 30, 35, 30, 60, 40], dtype=np.float32)  # amplitude of the leader's motion


class SimLeaderArm:
    """Leader arm moved by an imaginary operator: sums of slow sines, distinct per arm name."""

    def __init__(self, name: str = "leader", clock: Callable[[], float] = time.monotonic):
        self.joint_names = list(SO101_JOINT_NAMES)
        self._clock = clock
        self._t0 = clock()
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        self._freq = rng.uniform(0.05, 0.25, size=(2, 6)).astype(np.float32)
        self._phase = rng.uniform(0, 2 * np.pi, size=(2, 6)).astype(np.float32)

    def read_joints(self) -> np.ndarray:
        t = self._clock() - self._t0
        wave = 0.7 * np.sin(2 * np.pi * self._freq[0] * t + self._phase[0]) + 0.3 * np.sin(
            2 * np.pi * self._freq[1] * t + self._phase[1]
        )
        return np.clip(HOME + SWING * wave, SO101_LIMITS[:, 0], SO101_LIMITS[:, 1]).astype(np.float32)

    def write_goal(self, goal: np.ndarray) -> None:
        """A leader is moved by hand; commanding it is a wiring mistake."""
        raise RuntimeError("SimLeaderArm: the leader arm takes no goal (wire the leader's joint to the follower)")

    def close(self) -> None:
        pass


class SimFollowerArm:
    """Follower that tracks its goal with lag (time constant) and a speed limit, within joint limits."""

    def __init__(self, time_constant_s: float = 0.08, max_speed_deg_s: float = 240.0,
                 clock: Callable[[], float] = time.monotonic):
        self.joint_names = list(SO101_JOINT_NAMES)
        self._clock = clock
        self._tau = time_constant_s
        self._max_speed = max_speed_deg_s
        self._position = HOME.copy()
        self._goal = HOME.copy()
        self._last = clock()

    def write_goal(self, goal: np.ndarray) -> None:
        goal = np.asarray(goal, dtype=np.float32).reshape(-1)
        if goal.shape != (len(self.joint_names),):
            raise ValueError(f"SimFollowerArm: goal has {goal.size} values, expected {len(self.joint_names)}")
        self._advance()
        self._goal = np.clip(goal, SO101_LIMITS[:, 0], SO101_LIMITS[:, 1])

    def read_joints(self) -> np.ndarray:
        self._advance()
        return self._position.copy()

    def _advance(self) -> None:
        now = self._clock()
        dt, self._last = max(0.0, now - self._last), now
        step = (self._goal - self._position) * (1.0 - np.exp(-dt / self._tau))
        limit = self._max_speed * dt
        self._position = (self._position + np.clip(step, -limit, limit)).astype(np.float32)

    def close(self) -> None:
        pass
