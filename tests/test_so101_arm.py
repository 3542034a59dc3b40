"""SO-101 leader and follower against emulated buses on real ptys."""

import time
from pathlib import Path

import numpy as np
import pytest

from operating_platform.hardware.base import ArmDriver, SO101_JOINT_NAMES
from operating_platform.hardware.feetech.emulator import ServoBusEmulator
from operating_platform.hardware.feetech.protocol import (
    FeetechChecksumError,
    FeetechMissingServoError,
    FeetechPortError,
    FeetechTimeoutError,
)
from operating_platform.hardware.so101.arm import SO101Follower, SO101Leader
from operating_platform.hardware.so101.calibration import ArmCalibration, CalibrationError

CALIBRATION = Path(__file__).resolve().parents[1] / "calibration"
LEADER_CAL = CALIBRATION / "so101_leader.json"
FOLLOWER_CAL = CALIBRATION / "so101_follower.json"


@pytest.fixture
def leader_bus():
    with ServoBusEmulator() as emu:
        yield emu


@pytest.fixture
def follower_bus():
    with ServoBusEmulator() as emu:
        yield emu


def test_leader_writes_calibration_and_reads_degrees(leader_bus):
    calibration = ArmCalibration.load(LEADER_CAL)
    with SO101Leader(leader_bus.slave_path, calibration) as leader:
        assert isinstance(leader, ArmDriver)
        assert leader.joint_names == SO101_JOINT_NAMES
        for name, motor in calibration.motors.items():
            assert leader_bus.get(motor.id, "Homing_Offset") == motor.homing_offset, name
            assert leader_bus.get(motor.id, "Min_Position_Limit") == motor.range_min, name
            assert leader_bus.get(motor.id, "Torque_Enable") == 0, name
        # a hand puts each joint a quarter turn above the middle of its range; the gripper at its max
        for motor in list(calibration.motors.values())[:5]:
            leader_bus.move(motor.id, (motor.range_min + motor.range_max) / 2 + 4095 / 4)
        leader_bus.move(6, calibration.motors["gripper"].range_max)
        joints = leader.read_joints()
        assert joints.dtype == np.float32 and joints.shape == (6,)
        np.testing.assert_allclose(joints, [90, 90, 90, 90, 90, 100], atol=0.1)
        with pytest.raises(RuntimeError, match="leader arm on .* is torque-off"):
            leader.write_goal(joints)


def test_calibration_is_not_rewritten_when_the_servo_already_has_it(leader_bus):
    SO101Leader(leader_bus.slave_path, LEADER_CAL).close()
    before = leader_bus.packets_handled
    SO101Leader(leader_bus.slave_path, LEADER_CAL).close()
    # 6 pings + 18 register reads + 6 torque-off writes: no EEPROM writes the second time
    assert leader_bus.packets_handled - before == 30


def test_follower_gains_torque_and_following(leader_bus, follower_bus):
    leader_bus.set_wave(400, 1.5)
    with SO101Leader(leader_bus.slave_path, LEADER_CAL) as leader, SO101Follower(
        follower_bus.slave_path, FOLLOWER_CAL
    ) as follower:
        assert isinstance(follower, ArmDriver)
        for servo_id in range(1, 7):
            assert follower_bus.get(servo_id, "P_Coefficient") == 16
            assert follower_bus.get(servo_id, "I_Coefficient") == 0
            assert follower_bus.get(servo_id, "D_Coefficient") == 32
            assert follower_bus.get(servo_id, "Operating_Mode") == 0
            assert follower_bus.get(servo_id, "Torque_Enable") == 1
        actions, reached = [], []
        for _ in range(45):  # 1.5 s of teleoperation at 30 Hz
            action = leader.read_joints()
            follower.write_goal(action)
            actions.append(action)
            reached.append(follower.read_joints())
            time.sleep(1 / 30)
        assert np.ptp(np.array(actions)[:, :5], axis=0).min() > 20  # the hand really moved every joint
        assert np.ptp(np.array(reached)[:, :5], axis=0).min() > 20  # and the follower went along
        deadline = time.monotonic() + 2
        while np.abs(follower.read_joints() - action)[:5].max() > 0.5:  # it settles on the last goal
            assert time.monotonic() < deadline, (follower.read_joints(), action)
            time.sleep(0.01)
    assert follower_bus.get(1, "Torque_Enable") == 0  # released on close


def test_follower_does_not_jump_when_torque_comes_on(follower_bus):
    follower_bus.move(2, 2500)
    with SO101Follower(follower_bus.slave_path, FOLLOWER_CAL) as follower:
        first = follower.read_joints()
        time.sleep(0.1)
        np.testing.assert_allclose(follower.read_joints(), first, atol=0.1)


def test_unplugged_servos_are_listed_in_one_error(leader_bus):
    leader_bus.inject("missing", 3)
    leader_bus.inject("missing", 5)
    with pytest.raises(FeetechMissingServoError) as info:
        SO101Leader(leader_bus.slave_path, LEADER_CAL)
    assert str(info.value) == (
        "leader arm: servo(s) id 3 (elbow_flex), id 5 (wrist_roll) do not answer PING; check the 3-pin cables, "
        f"the power supply and that this is the right port (port {leader_bus.slave_path})"
    )


def test_wrong_port_and_bad_calibration_fail_before_touching_the_bus(tmp_path):
    with pytest.raises(FeetechPortError, match="port /dev/ttyUSB_nope"):
        SO101Leader("/dev/ttyUSB_nope", LEADER_CAL)
    with pytest.raises(CalibrationError, match="does not exist"):
        SO101Leader("/dev/ttyUSB_nope", tmp_path / "none.json")


def test_faults_mid_run_raise_then_reading_resumes(leader_bus):
    """The arm node catches these per tick: the error is reported, the next tick reads again."""
    with SO101Leader(leader_bus.slave_path, LEADER_CAL, retries=1) as leader:
        leader.read_joints()
        leader_bus.inject("missing", 4)  # cable pulled
        with pytest.raises(FeetechTimeoutError, match=r"servo id 4, register Present_Position"):
            leader.read_joints()
        leader_bus.clear_faults()  # plugged back in
        leader_bus.inject("corrupt_checksum", 2)
        with pytest.raises(FeetechChecksumError, match="servo id 2"):
            leader.read_joints()
        leader_bus.clear_faults()
        assert leader.read_joints().shape == (6,)
