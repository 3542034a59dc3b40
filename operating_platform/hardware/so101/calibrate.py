"""Interactive SO-101 calibration: middle pose -> homing offsets, then range of motion -> limits.

Same procedure and file as LeRobot's SO-101 calibration: with offsets and
limits cleared, the operator holds the arm in the middle of its range; each
servo's homing offset is chosen so that pose reads 2047 (half a turn). Then the
operator moves every joint through its full range while the extremes are
recorded, until ENTER. The result is written to the servos and, atomically,
to `<calibration_dir>/<name>.json`; by default calibration_dir is the user's own
(`$XDG_CONFIG_HOME/operating-platform/calibration`), never the sample files shipped
in the repository's calibration/ folder.

Console hook: calibrate_command(argv) parses the `calibrate` subcommand's flags;
run_calibration(arm, port, calibration_dir) is the same as a function call.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from operating_platform.hardware.feetech.bus import FeetechBus
from operating_platform.hardware.feetech.control_table import DEFAULT_BAUDRATE
from operating_platform.hardware.feetech.protocol import FeetechError

from .arm import SO101_IDS, require_servos
from .calibration import HOMING_OFFSET_LIMIT, MAX_RAW, ArmCalibration, CalibrationError, MotorCalibration, calibration_path

HALF_TURN = MAX_RAW // 2
ARMS = ("leader", "follower")


def user_calibration_dir() -> Path:
    """Where calibrations are written and read unless --robot.calibration_dir says otherwise."""
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "operating-platform" / "calibration"


def show_in_place(line: str, stream=None) -> None:
    """Redraw one line (the ranges as they grow) instead of scrolling the instructions away."""
    stream = stream or sys.stdout
    stream.write("\r\x1b[2K" + line)
    stream.flush()


class SO101Calibrator:
    """The two recording steps, driven by whoever decides when the operator is ready (console or test)."""

    def __init__(self, bus: FeetechBus, ids: dict[str, int] = SO101_IDS, show: Callable[[str], None] = print):
        self.bus = bus
        self.ids = dict(ids)
        self.show = show  # the growing ranges, one call per change (run_calibration redraws one line)

    def reset(self) -> None:
        """Torque off and offsets/limits cleared, so positions read are the raw shaft positions."""
        for servo_id in self.ids.values():
            self.bus.write("Torque_Enable", servo_id, 0)
            self.bus.write("Lock", servo_id, 0)
            self.bus.write("Homing_Offset", servo_id, 0)
            self.bus.write("Min_Position_Limit", servo_id, 0)
            self.bus.write("Max_Position_Limit", servo_id, MAX_RAW)

    def set_middle(self) -> dict[str, int]:
        """Offsets that make the current pose read half a turn; written to the servos at once."""
        present = self._read()
        offsets = {}
        for name, position in present.items():
            offset = max(-HOMING_OFFSET_LIMIT, min(HOMING_OFFSET_LIMIT, position - HALF_TURN))
            self.bus.write("Homing_Offset", self.ids[name], offset)
            offsets[name] = offset
        return offsets

    def record_ranges(self, done: Callable[[], bool], poll_s: float = 0.01) -> tuple[dict[str, int], dict[str, int]]:
        """Track each joint's min and max until done() is true; show them as they grow."""
        mins = self._read()
        maxes = dict(mins)
        shown = None
        while not done():
            for name, position in self._read().items():
                mins[name] = min(mins[name], position)
                maxes[name] = max(maxes[name], position)
            line = "  ".join(f"{name} {mins[name]}..{maxes[name]}" for name in self.ids)
            if line != shown:
                self.show(line)
                shown = line
            time.sleep(poll_s)
        return mins, maxes

    def finish(self, offsets: dict[str, int], mins: dict[str, int], maxes: dict[str, int], source: str) -> ArmCalibration:
        """Validate (a joint that never moved is an error naming it) and write the limits to the servos."""
        motionless = [name for name in self.ids if mins[name] >= maxes[name]]
        if motionless:
            raise CalibrationError(
                f"{source}: joint(s) {', '.join(motionless)} did not move while recording the range; "
                "move every joint through its full range before pressing ENTER"
            )
        calibration = ArmCalibration(
            {
                name: MotorCalibration(servo_id, 0, offsets[name], mins[name], maxes[name])
                for name, servo_id in self.ids.items()
            },
            source,
        )
        for motor in calibration.motors.values():
            self.bus.write("Min_Position_Limit", motor.id, motor.range_min)
            self.bus.write("Max_Position_Limit", motor.id, motor.range_max)
        return calibration

    def _read(self) -> dict[str, int]:
        raw = self.bus.sync_read("Present_Position", list(self.ids.values()))
        return {name: raw[servo_id] for name, servo_id in self.ids.items()}


def run_calibration(
    arm: str,
    port: str,
    calibration_dir: str | Path | None = None,
    name: str | None = None,
    robot_type: str = "so101",
    baudrate: int = DEFAULT_BAUDRATE,
    ask: Callable[[str], str] = input,
    show: Callable[[str], None] = functools.partial(print, flush=True),
    show_range: Callable[[str], None] = show_in_place,
) -> Path:
    """Calibrate one arm interactively and write `<calibration_dir>/<name or so101_<arm>>.json`; returns the path."""
    if robot_type != "so101":
        raise ValueError(f"calibration supports robot_type so101, not {robot_type!r}")
    if arm not in ARMS:
        raise ValueError(f"--robot.arm must be leader or follower, not {arm!r}")
    path = calibration_path(calibration_dir or user_calibration_dir(), name or f"so101_{arm}")
    with FeetechBus(port, baudrate=baudrate) as bus:
        require_servos(bus, SO101_IDS, arm)
        calibrator = SO101Calibrator(bus, show=show_range)
        calibrator.reset()
        show(f"Move the {arm} arm to the middle of its range of motion and press ENTER...")
        ask("")
        offsets = calibrator.set_middle()
        show("Move every joint through its entire range of motion. Recording; press ENTER to stop...")
        pressed = threading.Event()

        def wait_for_enter() -> None:
            try:
                ask("")
            finally:  # EOF on stdin ends the recording too, instead of recording forever
                pressed.set()

        threading.Thread(target=wait_for_enter, daemon=True).start()
        try:
            mins, maxes = calibrator.record_ranges(pressed.is_set)
        finally:
            show("")  # end the range line
        calibration = calibrator.finish(offsets, mins, maxes, str(path))
    calibration.save(path)
    show(f"Calibration saved to {path}")
    return path


def calibrate_command(argv: list[str]) -> int:
    """`main.py calibrate --robot.robot_type=so101 --robot.arm=leader|follower --robot.port=PORT`; exit code."""
    parser = argparse.ArgumentParser(
        prog="main.py calibrate",
        description=f"Calibrate one SO-101 arm and write <calibration_dir>/<name>.json (default folder: {user_calibration_dir()}).",
    )
    parser.add_argument("--robot.robot_type", "--robot.type", dest="robot_type", default="so101", help="so101")
    parser.add_argument("--robot.arm", dest="arm", required=True, choices=ARMS)
    parser.add_argument("--robot.port", dest="port", required=True, help="serial port, e.g. /dev/ttyACM0")
    parser.add_argument("--robot.calibration_dir", dest="calibration_dir", default=None,
                        help=f"folder to write to (default: {user_calibration_dir()}; the repository's calibration/ "
                             "holds sample files)")
    parser.add_argument("--robot.id", dest="name", default=None, help="file name without .json (default so101_<arm>)")
    args = parser.parse_args(argv)
    try:
        run_calibration(args.arm, args.port, args.calibration_dir, args.name, args.robot_type)
    except (FeetechError, CalibrationError, ValueError) as exc:
        print(f"main.py calibrate: error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        print("main.py calibrate: interrupted; no calibration written", file=sys.stderr)
        return 1
    return 0
