"""The interactive calibration procedure, with an emulated arm moved by a scripted 'operator'."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from e2e_helpers import Lines

from operating_platform.hardware.feetech.emulator import ServoBusEmulator
from operating_platform.hardware.feetech.protocol import FeetechMissingServoError
from operating_platform.hardware.so101.arm import SO101Leader
from operating_platform.hardware.so101.calibrate import run_calibration
from operating_platform.hardware.so101.calibration import ArmCalibration, CalibrationError

MAIN = Path(__file__).resolve().parents[1] / "operating_platform" / "core" / "main.py"
MIDDLE_SHAFT = {1: 1000, 2: 3000, 3: 2500, 4: 1500, 5: 2048, 6: 2600}
SWING = {1: (-600, 700), 2: (-900, 400), 3: (-500, 500), 4: (-300, 800), 5: (-1500, 1500), 6: (0, 1200)}


class ScriptedOperator:
    """Answers the prompts: poses the arm in its middle, then swings every joint, then presses ENTER."""

    def __init__(self, emulator, move_joints=True):
        self.emulator = emulator
        self.move_joints = move_joints
        self.prompts = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if len(self.prompts) == 1:
            for servo_id, shaft in MIDDLE_SHAFT.items():
                self.emulator.move(servo_id, shaft)  # offsets were just cleared: present == shaft
        elif self.move_joints:
            for servo_id, (low, high) in SWING.items():
                for offset in (low, high, 0):
                    self.emulator.move(servo_id, 2047 + offset)
                    self.wait_for_two_polls()
        return ""

    def wait_for_two_polls(self):
        """Hold the pose until the recorder has read the bus twice after it (however loaded the machine)."""
        seen = self.emulator.packets_handled
        while self.emulator.packets_handled < seen + 2:
            time.sleep(0.002)


def test_calibration_records_middle_and_ranges_and_the_arm_uses_it(tmp_path):
    with ServoBusEmulator() as emu:
        operator = ScriptedOperator(emu)
        shown = []
        path = run_calibration("leader", emu.slave_path, tmp_path, ask=operator, show=shown.append)
        assert path == tmp_path / "so101_leader.json"
        assert shown[0] == "Move the leader arm to the middle of its range of motion and press ENTER..."
        assert shown[-1] == f"Calibration saved to {path}"

        calibration = ArmCalibration.load(path)
        for name, motor in calibration.motors.items():
            assert motor.homing_offset == MIDDLE_SHAFT[motor.id] - 2047, name
            assert (motor.range_min, motor.range_max) == (2047 + SWING[motor.id][0], 2047 + SWING[motor.id][1]), name
            assert emu.get(motor.id, "Max_Position_Limit") == motor.range_max

        # the arm driven with the new file reads the middle pose as the middle of each range
        for servo_id in MIDDLE_SHAFT:
            emu.move(servo_id, 2047 + sum(SWING[servo_id]) / 2)
        with SO101Leader(emu.slave_path, path) as leader:
            np.testing.assert_allclose(leader.read_joints(), [0, 0, 0, 0, 0, 50], atol=0.1)


def test_by_default_it_writes_to_the_users_folder_and_redraws_one_range_line(tmp_path, monkeypatch):
    import io

    from operating_platform.hardware.so101.calibrate import show_in_place

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    screen = io.StringIO()
    with ServoBusEmulator() as emu:
        path = run_calibration("leader", emu.slave_path, ask=ScriptedOperator(emu), show=lambda line: print(line, file=screen),
                               show_range=lambda line: show_in_place(line, screen))
    assert path == tmp_path / "config" / "operating-platform" / "calibration" / "so101_leader.json" and path.exists()
    text = screen.getvalue()
    assert text.count("\r\x1b[2K") > 5, "the ranges were redrawn as they grew"
    lines = text.split("\n")
    assert len(lines) == 5, "two instructions, the one range line, the saved line (and the final newline)"
    assert lines[1].startswith("Move every joint") and "shoulder_pan" in lines[2] and lines[3].startswith("Calibration saved")


def test_a_joint_that_never_moved_is_named(tmp_path):
    with ServoBusEmulator() as emu:
        with pytest.raises(CalibrationError, match=r"joint\(s\) shoulder_pan, .*gripper did not move"):
            run_calibration("follower", emu.slave_path, tmp_path, ask=ScriptedOperator(emu, move_joints=False), show=print)
    assert not (tmp_path / "so101_follower.json").exists()


def test_unplugged_servo_and_bad_arguments(tmp_path):
    with ServoBusEmulator() as emu:
        emu.inject("missing", 2)
        with pytest.raises(FeetechMissingServoError, match="servo id 2"):
            run_calibration("leader", emu.slave_path, tmp_path, ask=ScriptedOperator(emu))
    with pytest.raises(ValueError, match="--robot.arm must be leader or follower, not 'middle'"):
        run_calibration("middle", "/dev/null", tmp_path)
    with pytest.raises(ValueError, match="robot_type so101, not 'koch'"):
        run_calibration("leader", "/dev/null", tmp_path, robot_type="koch")




@pytest.mark.slow
def test_calibrate_command_as_an_operator_runs_it(tmp_path):
    """Real processes: the emulator on a pty and `main.py calibrate` reading ENTER from its stdin."""
    emulator = subprocess.Popen([sys.executable, "-m", "operating_platform.hardware.feetech.emulator"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    calibrate = None
    try:
        emulator_out = Lines(emulator.stdout)
        port = emulator_out.next().strip()
        calibrate = subprocess.Popen(
            [sys.executable, str(MAIN), "calibrate", "--robot.robot_type=so101", "--robot.arm=follower",
             f"--robot.port={port}", f"--robot.calibration_dir={tmp_path}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        shown = Lines(calibrate.stdout)
        assert shown.next().startswith("Move the follower arm to the middle")
        calibrate.stdin.write("\n")  # the arm is in its middle pose
        calibrate.stdin.flush()
        assert shown.next().startswith("Move every joint through its entire range")
        for offset in (-400, 500):
            for servo_id in range(1, 7):
                emulator.stdin.write(json.dumps({"cmd": "move", "id": servo_id, "position": 2047 + offset}) + "\n")
            emulator.stdin.flush()
            assert all(json.loads(emulator_out.next())["ok"] for _ in range(6))
            time.sleep(0.3)  # the command polls every 10 ms
        calibrate.stdin.write("\n")
        calibrate.stdin.close()
        assert calibrate.wait(timeout=30) == 0
        lines = []
        while not lines or not lines[-1].startswith("Calibration saved"):
            lines.append(shown.next())
        assert lines[-1].strip() == f"Calibration saved to {tmp_path}/so101_follower.json"
        calibration = ArmCalibration.load(tmp_path / "so101_follower.json")
        assert {(m.range_min, m.range_max) for m in calibration.motors.values()} == {(1647, 2547)}
    finally:
        for proc in (calibrate, emulator):
            if proc is not None:
                proc.kill()
                proc.wait()


def test_calibrate_command_reports_a_wrong_port_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(MAIN), "calibrate", "--robot.arm=leader", "--robot.port=/dev/ttyACM_gone"],
        capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == ("main.py calibrate: error: cannot open serial port at 1000000 baud: could not open port "
                             "/dev/ttyACM_gone: [Errno 2] No such file or directory: '/dev/ttyACM_gone' "
                             "(port /dev/ttyACM_gone)\n")
    assert not (tmp_path / "calibration").exists()


def test_calibrate_command_flags_are_checked():
    result = subprocess.run([sys.executable, str(MAIN), "calibrate", "--robot.arm=middle", "--robot.port=/dev/x"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "argument --robot.arm: invalid choice: 'middle'" in result.stderr
