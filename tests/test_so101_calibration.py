"""Calibration files: the committed samples load, every bad field names file and field, units convert."""

import json
from pathlib import Path

import numpy as np
import pytest

from operating_platform.hardware.base import SO101_JOINT_NAMES
from operating_platform.hardware.so101.calibration import ArmCalibration, CalibrationError

REPO = Path(__file__).resolve().parents[1]
SAMPLES = [REPO / "calibration" / "so101_leader.json", REPO / "calibration" / "so101_follower.json"]


def _sample() -> dict:
    return json.loads(SAMPLES[0].read_text())


def _write(tmp_path, data) -> Path:
    path = tmp_path / "arm.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_committed_samples_load(path):
    calibration = ArmCalibration.load(path)
    assert calibration.joint_names == SO101_JOINT_NAMES
    assert calibration.ids == [1, 2, 3, 4, 5, 6]


def _set(data, joint, field, value):
    data[joint][field] = value
    return data


def _drop(data, joint, field=None):
    if field is None:
        del data[joint]
    else:
        del data[joint][field]
    return data


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: _drop(d, "elbow_flex"), "missing joint(s) elbow_flex"),
        (lambda d: {**d, "elbow": d["elbow_flex"]}, "unknown joint(s) elbow"),
        (lambda d: _drop(d, "wrist_flex", "range_max"), "field 'wrist_flex.range_max': missing"),
        (lambda d: _set(d, "gripper", "range_min", "2000"), "field 'gripper.range_min': expected an integer, got \"2000\""),
        (lambda d: _set(d, "gripper", "drive_mode", True), "field 'gripper.drive_mode': expected an integer, got true"),
        (lambda d: _set(d, "gripper", "drive_mode", 2), "field 'gripper.drive_mode': 2 is outside 0..1"),
        (lambda d: _set(d, "shoulder_pan", "homing_offset", -2048), "field 'shoulder_pan.homing_offset': -2048 is outside -2047..2047"),
        (lambda d: _set(d, "shoulder_lift", "range_max", 4096), "field 'shoulder_lift.range_max': 4096 is outside 0..4095"),
        (lambda d: _set(d, "elbow_flex", "range_min", 3200), "field 'elbow_flex.range_min': 3200 must be below range_max 3130"),
        (lambda d: _set(d, "wrist_roll", "id", 2), "field 'wrist_roll.id': id 2 is also used by 'shoulder_lift'"),
        (lambda d: _set(d, "wrist_roll", "idd", 5), "field 'wrist_roll.idd': unknown field"),
        (lambda d: _set(d, "wrist_roll", "id", 0), "field 'wrist_roll.id': 0 is outside 1..253"),
        (lambda d: {**d, "gripper": [6, 0]}, "field 'gripper': expected an object"),
        (lambda d: [d], "expected a JSON object keyed by joint name, got list"),
    ],
)
def test_bad_field_is_named_with_the_file(tmp_path, mutate, message):
    path = _write(tmp_path, mutate(_sample()))
    with pytest.raises(CalibrationError) as info:
        ArmCalibration.load(path)
    assert str(info.value).startswith(f"{path}: {message}")


def test_invalid_json_names_line_and_column(tmp_path):
    path = _write(tmp_path, '{"shoulder_pan": {"id": 1,, }}')
    with pytest.raises(CalibrationError, match=rf"{path}: not valid JSON: .*line 1 column 27"):
        ArmCalibration.load(path)


def test_missing_file_says_how_to_create_it(tmp_path):
    with pytest.raises(CalibrationError) as info:
        ArmCalibration.load(tmp_path / "so101_leader.json")
    assert "so101_leader.json does not exist" in str(info.value)
    assert "main.py calibrate --robot.robot_type=so101 --robot.arm=leader|follower --robot.port=PORT" in str(info.value)


def test_save_then_load_round_trips_atomically(tmp_path):
    original = ArmCalibration.load(SAMPLES[1])
    path = original.save(tmp_path / "sub" / "copy.json")
    assert ArmCalibration.load(path).to_dict() == original.to_dict()
    assert sorted(p.name for p in path.parent.iterdir()) == ["copy.json"]  # no temp files left


def test_degrees_follow_lerobot_and_gripper_is_percent():
    calibration = ArmCalibration.load(SAMPLES[0])
    mins = np.array([m.range_min for m in calibration.motors.values()])
    maxes = np.array([m.range_max for m in calibration.motors.values()])
    mid = (mins + maxes) / 2
    user = calibration.raw_to_user(mid + 4095 / 4)  # a quarter turn above the middle
    np.testing.assert_allclose(user[:5], 90.0, atol=1e-4)
    assert user.dtype == np.float32
    np.testing.assert_allclose(calibration.raw_to_user(mins)[5], 0.0)
    np.testing.assert_allclose(calibration.raw_to_user(maxes)[5], 100.0)


def test_round_trip_and_clamping():
    calibration = ArmCalibration.load(SAMPLES[1])
    goal = np.array([10.0, -20.0, 30.0, -40.0, 50.0, 42.0], dtype=np.float32)
    np.testing.assert_allclose(calibration.raw_to_user(calibration.user_to_raw(goal)), goal, atol=0.1)
    raw = calibration.user_to_raw([720, -720, 0, 0, 0, 150])
    assert raw[0] == calibration.motors["shoulder_pan"].range_max
    assert raw[1] == calibration.motors["shoulder_lift"].range_min
    assert raw[5] == calibration.motors["gripper"].range_max


def test_drive_mode_mirrors_the_joint():
    data = _sample()
    data["shoulder_pan"]["drive_mode"] = 1
    data["gripper"]["drive_mode"] = 1
    mirrored = ArmCalibration.from_dict(data, "test")
    plain = ArmCalibration.from_dict(_sample(), "test")
    raw = [3000, 2000, 2000, 2000, 2000, 2500]
    a, b = mirrored.raw_to_user(raw), plain.raw_to_user(raw)
    assert a[0] == pytest.approx(-b[0])
    assert a[5] == pytest.approx(100 - b[5])
    np.testing.assert_array_equal(mirrored.user_to_raw(a), raw)


def test_bad_goal_names_the_joint():
    calibration = ArmCalibration.load(SAMPLES[1])
    with pytest.raises(ValueError, match="non-finite goal for joint.s. elbow_flex"):
        calibration.user_to_raw([0, 0, np.nan, 0, 0, 0])
    with pytest.raises(ValueError, match=r"expected 6 joint values .*got shape \(5,\)"):
        calibration.user_to_raw([0, 0, 0, 0, 0])
