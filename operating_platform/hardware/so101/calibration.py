"""SO-101 calibration files: load with field-by-field validation, save atomically, convert units.

`calibration/<arm name>.json` holds, per joint, `{id, drive_mode, homing_offset,
range_min, range_max}` as LeRobot stores SO-101 calibration. Units follow
LeRobot's `use_degrees` mode so recorded datasets mean the same thing there:
body joints in degrees, 0 at the middle of the recorded range,
(raw - mid) * 360 / 4095; the gripper in percent of its range, 0-100.
drive_mode 1 mirrors the joint. Values are clamped to the recorded range.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from operating_platform.hardware.base import SO101_JOINT_NAMES

GRIPPER = "gripper"
FIELDS = ("id", "drive_mode", "homing_offset", "range_min", "range_max")
MAX_RAW = 4095  # STS3215 encoder steps per turn - 1
HOMING_OFFSET_LIMIT = 2047  # sign-magnitude, sign in bit 11
FIELD_BOUNDS = {
    "id": (1, 253),
    "drive_mode": (0, 1),
    "homing_offset": (-HOMING_OFFSET_LIMIT, HOMING_OFFSET_LIMIT),
    "range_min": (0, MAX_RAW),
    "range_max": (0, MAX_RAW),
}


def calibration_path(calibration_dir: str | os.PathLike, arm_name: str) -> Path:
    """Where an arm's calibration lives: `<calibration_dir>/<arm name>.json` (e.g. so101_leader)."""
    return Path(calibration_dir) / f"{arm_name}.json"


class CalibrationError(ValueError):
    """A calibration file is missing, unreadable or has an invalid field; the message names file and field."""


@dataclass(frozen=True)
class MotorCalibration:
    id: int
    drive_mode: int
    homing_offset: int
    range_min: int
    range_max: int


class ArmCalibration:
    """The calibration of one arm: joints in order, with vectorised raw <-> user-unit conversion."""

    def __init__(self, motors: dict[str, MotorCalibration], source: str = "<memory>"):
        self.motors = dict(motors)
        self.source = source
        self.joint_names = list(self.motors)
        self.ids = [m.id for m in self.motors.values()]
        self._min = np.array([m.range_min for m in self.motors.values()], dtype=np.float64)
        self._max = np.array([m.range_max for m in self.motors.values()], dtype=np.float64)
        self._mid = (self._min + self._max) / 2
        self._mirrored = np.array([m.drive_mode == 1 for m in self.motors.values()])
        self._is_gripper = np.array([name == GRIPPER for name in self.joint_names])

    # -- files -------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike, joint_names: list[str] = SO101_JOINT_NAMES) -> ArmCalibration:
        path = Path(path)
        if not path.is_file():
            raise CalibrationError(
                f"calibration file {path} does not exist; create it with "
                "`python operating_platform/core/main.py calibrate --robot.robot_type=so101 "
                "--robot.arm=leader|follower --robot.port=PORT`"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"{path}: cannot read calibration file: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"{path}: not valid JSON: {exc}") from exc
        return cls.from_dict(data, str(path), joint_names)

    @classmethod
    def from_dict(cls, data, source: str, joint_names: list[str] = SO101_JOINT_NAMES) -> ArmCalibration:
        if not isinstance(data, dict):
            raise CalibrationError(f"{source}: expected a JSON object keyed by joint name, got {type(data).__name__}")
        missing = [name for name in joint_names if name not in data]
        if missing:
            raise CalibrationError(f"{source}: missing joint(s) {', '.join(missing)}")
        unknown = [name for name in data if name not in joint_names]
        if unknown:
            raise CalibrationError(
                f"{source}: unknown joint(s) {', '.join(map(str, unknown))}; expected {', '.join(joint_names)}"
            )
        motors = {name: _validate_motor(data[name], f"{source}: field '{name}") for name in joint_names}
        seen: dict[int, str] = {}
        for name, motor in motors.items():
            if motor.id in seen:
                raise CalibrationError(f"{source}: field '{name}.id': id {motor.id} is also used by '{seen[motor.id]}'")
            seen[motor.id] = name
        return cls(motors, source)

    def to_dict(self) -> dict:
        return {name: asdict(motor) for name, motor in self.motors.items()}

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file + rename): a crash never leaves half a calibration."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.to_dict(), f, indent=4)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return path

    # -- units -------------------------------------------------------------------

    def raw_to_user(self, raw) -> np.ndarray:
        """Encoder steps (one per joint, in joint order) -> degrees / gripper percent, float32."""
        raw = np.clip(np.asarray(raw, dtype=np.float64), self._min, self._max)
        degrees = (raw - self._mid) * 360.0 / MAX_RAW
        degrees = np.where(self._mirrored, -degrees, degrees)
        percent = (raw - self._min) / (self._max - self._min) * 100.0
        percent = np.where(self._mirrored, 100.0 - percent, percent)
        return np.where(self._is_gripper, percent, degrees).astype(np.float32)

    def user_to_raw(self, values) -> np.ndarray:
        """Degrees / gripper percent -> encoder steps, rounded and clamped to each joint's range."""
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (len(self.joint_names),):
            raise ValueError(f"expected {len(self.joint_names)} joint values ({', '.join(self.joint_names)}), got shape {values.shape}")
        bad = [name for name, v in zip(self.joint_names, values) if not np.isfinite(v)]
        if bad:
            raise ValueError(f"non-finite goal for joint(s) {', '.join(bad)}")
        degrees = np.where(self._mirrored, -values, values)
        from_degrees = degrees * MAX_RAW / 360.0 + self._mid
        percent = np.where(self._mirrored, 100.0 - values, values)
        from_percent = percent / 100.0 * (self._max - self._min) + self._min
        raw = np.where(self._is_gripper, from_percent, from_degrees)
        return np.clip(np.rint(raw), self._min, self._max).astype(np.int64)


def _validate_motor(entry, where: str) -> MotorCalibration:
    if not isinstance(entry, dict):
        raise CalibrationError(f"{where}': expected an object with {', '.join(FIELDS)}, got {type(entry).__name__}")
    unknown = [key for key in entry if key not in FIELDS]
    if unknown:
        raise CalibrationError(f"{where}.{unknown[0]}': unknown field; expected {', '.join(FIELDS)}")
    values = {}
    for key in FIELDS:
        if key not in entry:
            raise CalibrationError(f"{where}.{key}': missing")
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise CalibrationError(f"{where}.{key}': expected an integer, got {json.dumps(value)}")
        low, high = FIELD_BOUNDS[key]
        if not low <= value <= high:
            raise CalibrationError(f"{where}.{key}': {value} is outside {low}..{high}")
        values[key] = value
    if values["range_min"] >= values["range_max"]:
        raise CalibrationError(
            f"{where}.range_min': {values['range_min']} must be below range_max {values['range_max']} "
            "(the joint did not move during calibration?)"
        )
    return MotorCalibration(**values)
