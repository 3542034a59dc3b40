"""Operator console: record SO-101 teleoperation (or the simulator) into a LeRobot v2.1 dataset.

    python operating_platform/core/main.py --record.repo_id=NAME [--robot.robot_type=so101 ...]
    python operating_platform/core/main.py calibrate --robot.robot_type=so101 --robot.arm=leader|follower --robot.port=PORT

Renders the dataflow for the flags, starts it with dora (a private coordinator and
daemon unless --dora.coordinator names a running `dora up`), joins it as the
`keyboard` node and shows live status. Keys: n = end episode and save,
r = re-record, p = proceed from reset, e = exit (pending saves are drained first).
Exit codes: 0 done, 1 recording failed, 2 bad flags.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder would shadow top-level modules named config/console/...
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from operating_platform.core.config import ConfigError, ConsoleConfig, camera_specs, parse_config  # noqa: E402
from operating_platform.core.console import run_session  # noqa: E402
from operating_platform.core.dataflow import write_dataflow  # noqa: E402
from operating_platform.core.launcher import DoraLauncher, LaunchError, join_as_keyboard, node_logs_to  # noqa: E402
from operating_platform.dataflow.keyboard import (  # noqa: E402
    ScriptedKeys,
    parse_key_script,
    raise_keyboard_interrupt,
    terminal_or_no_keys,
)


def key_source(cfg: ConsoleConfig):
    if cfg.record.keys:
        return contextlib.nullcontext(ScriptedKeys(parse_key_script(cfg.record.keys)))
    return terminal_or_no_keys(sys.stdin)


def record(cfg: ConsoleConfig) -> int:
    run_dir = Path(tempfile.mkdtemp(prefix="op-record-"))
    dataflow = write_dataflow(cfg, run_dir / "dataflow.yml")
    launcher = DoraLauncher(run_dir, cfg.dora.coordinator, cfg.dora.daemon_port)
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)  # so the terminal and dora are cleaned up on kill
    # Ctrl-C must drain and stop even when started from a script that ignores SIGINT
    # (background jobs of a non-interactive shell inherit SIG_IGN, and Python keeps it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    state = None
    try:
        launcher.up()
        launcher.start(dataflow, name=f"record-{cfg.record.repo_id}-{int(time.time())}")
        with node_logs_to(run_dir / "keyboard.log"):
            node = join_as_keyboard(launcher.daemon_port, cfg.dora.start_timeout_s)
            print(f"recording into {cfg.record.dataset_root} — keys: n save, r re-record, p proceed, e exit",
                  flush=True)
            state = run_session(node, key_source(cfg))
            del node
    except LaunchError as exc:
        print(f"main.py: {exc} (dora logs: {run_dir})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the dataflow without waiting for the saver", file=sys.stderr)
        return 1
    finally:
        launcher.stop()
        launcher.close()
    if state is None or state.problems():  # the reasons are in the console's summary
        print(f"main.py: recording did not finish cleanly (dora logs: {run_dir})", file=sys.stderr)
        return 1
    shutil.rmtree(run_dir, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["calibrate"]:  # interactive SO-101 calibration, writes <calibration_dir>/so101_<arm>.json
        from operating_platform.hardware.so101.calibrate import calibrate_command

        return calibrate_command(argv[1:])
    try:
        cfg = parse_config(argv)
    except ConfigError as exc:
        print(f"main.py: error: {exc}", file=sys.stderr)
        return 2
    if problem := hardware_problem(cfg):
        print(f"main.py: {problem}", file=sys.stderr)
        return 1
    return record(cfg)


def hardware_problem(cfg: ConsoleConfig) -> str | None:
    """Check real devices before starting dora: one message naming every bad port, servo, file or camera."""
    cameras = {c.name: c.source for c in camera_specs(cfg.robot) if not c.is_sim}
    if cfg.robot.robot_type != "so101" and not cameras:
        return None
    from operating_platform.hardware.so101.preflight import HardwareCheckError, check_camera_sources, check_so101_setup

    try:
        if cfg.robot.robot_type == "so101":
            check_so101_setup(cfg.robot.leader_port, cfg.robot.follower_port, cfg.robot.calibration_dir, cameras)
        else:
            check_camera_sources(cameras)
    except HardwareCheckError as exc:
        return str(exc)
    return None


if __name__ == "__main__":
    sys.exit(main())
