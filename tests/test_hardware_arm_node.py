"""The arm node's logic (ArmPublisher, arm_from_env) driving SO-101 arms on emulated buses: faults are
reported and counted while the node keeps publishing, and the follower obeys the leader's joints."""

import time
from pathlib import Path

import numpy as np
import pytest

from operating_platform.dataflow.arm import ArmPublisher, arm_from_env
from operating_platform.dataflow.messages import decode_joint
from operating_platform.hardware.base import SO101_JOINT_NAMES
from operating_platform.hardware.feetech.emulator import ServoBusEmulator
from operating_platform.hardware.feetech.protocol import FeetechMissingServoError
from operating_platform.hardware.so101.arm import SO101Follower, SO101Leader

CALIBRATION = Path(__file__).resolve().parents[1] / "calibration"


def so101_env(role, port):
    return {"ARM_DRIVER": "so101", "ARM_ROLE": role, "ARM_PORT": port,
            "ARM_CALIBRATION": str(CALIBRATION / f"so101_{role}.json")}


class Outbox:
    def __init__(self):
        self.sent = []

    def __call__(self, output, value, metadata):
        self.sent.append((output, value, metadata))


def test_env_selects_the_so101_driver_and_publishes_named_joints():
    with ServoBusEmulator() as emu:
        driver = arm_from_env(so101_env("leader", emu.slave_path))
        assert isinstance(driver, SO101Leader)
        outbox = Outbox()
        node = ArmPublisher(driver, outbox, role="leader")
        node.on_tick()
        output, value, metadata = outbox.sent[0]
        assert output == "joint"
        joint = decode_joint(value, metadata, expected_names=SO101_JOINT_NAMES)
        assert joint.positions.shape == (6,)
        node.close()


def test_bus_faults_are_reported_and_the_node_keeps_publishing():
    with ServoBusEmulator() as emu:
        outbox = Outbox()
        logged = []
        node = ArmPublisher(arm_from_env(so101_env("leader", emu.slave_path)), outbox, role="leader")
        node.problems._log = logged.append
        node.on_tick()
        emu.inject("missing", 3)  # elbow servo cable pulled mid-recording
        for _ in range(3):
            node.on_tick()
        emu.clear_faults()
        node.on_tick()
        assert [out for out, _, _ in outbox.sent] == ["joint", "joint"]
        assert node.problems.counts["read"] == 3
        assert "servo id 3, register Present_Position" in logged[0]
        assert [m["seq"] for _, _, m in outbox.sent] == [1, 2]
        node.close()


def test_follower_node_obeys_leader_joints():
    with ServoBusEmulator() as leader_bus, ServoBusEmulator() as follower_bus:
        leader_bus.set_wave(300, 1.0)
        leader_out, follower_out = Outbox(), Outbox()
        leader = ArmPublisher(arm_from_env(so101_env("leader", leader_bus.slave_path)), leader_out, role="leader")
        follower_driver = arm_from_env(so101_env("follower", follower_bus.slave_path))
        assert isinstance(follower_driver, SO101Follower)
        follower = ArmPublisher(follower_driver, follower_out, role="follower")
        for _ in range(20):
            leader.on_tick()
            _, value, metadata = leader_out.sent[-1]
            follower.on_action(value, metadata)
            time.sleep(1 / 30)
        commanded = decode_joint(*leader_out.sent[-1][1:]).positions
        deadline = time.monotonic() + 2
        while True:  # the follower settles on the last goal it was sent
            follower.on_tick()
            reached = decode_joint(*follower_out.sent[-1][1:]).positions
            if np.abs(reached - commanded).max() <= 0.5 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        np.testing.assert_allclose(reached, commanded, atol=0.5)
        assert follower.goals_applied == 20 and follower.problems.total == 0
        leader.close()
        follower.close()


def test_unplugged_arm_fails_at_start_with_one_error():
    with ServoBusEmulator() as emu:
        for servo_id in range(1, 7):
            emu.inject("missing", servo_id)
        with pytest.raises(FeetechMissingServoError, match=r"follower arm: servo\(s\) id 1 \(shoulder_pan\), .*id 6 \(gripper\) do not answer"):
            arm_from_env(so101_env("follower", emu.slave_path))
