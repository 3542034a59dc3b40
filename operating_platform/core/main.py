"""Operator console: record SO-101 teleoperation (or the simulator) into a LeRobot v2.1 dataset.

    python operating_platform/core/main.py --record.repo_id=NAME [--robot.robot_type=so101 ...]
    python operating_platform/core/main.py calibrate --robot.robot_type=so101 --robot.arm=leader|follower --robot.port=PORT

Renders the dataflow for the flags, starts it with dora (a private coordinator and
daemon unless --dora.coordinator names a running `dora up`), connects to its
`keyboard` node's socket and shows live status. Keys: n = end episode and save,
r = re-record, p = proceed from reset, e = exit (pending saves are drained first).
Exit codes: 0 done, 1 recording failed, 2 bad flags or unusable dataset location.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import yaml

# Run as a script, this file's folder would shadow top-level modules named config/console/...
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from operating_platform.core.config import ConfigError, ConsoleConfig, camera_specs, help_text, parse_config  # noqa: E402
from operating_platform.core.console import run_session  # noqa: E402
from operating_platform.core.dataflow import write_dataflow  # noqa: E402
from operating_platform.core.join import JoinError, connect_to  # noqa: E402
from operating_platform.core.launcher import DoraLauncher, LaunchError  # noqa: E402
from operating_platform.core.preflight import LocationError, check_dataset_location, free_default_name  # noqa: E402
from operating_platform.core.progress import StartupProgress  # noqa: E402
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
    name = f"record-{cfg.record.repo_id}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run_dir = run_log_dir(name)
    dataflow = write_dataflow(cfg, run_dir / "dataflow.yml")
    launcher = DoraLauncher(run_dir, cfg.dora.coordinator)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # so the terminal and dora are cleaned up on kill / closed terminal
        signal.signal(sig, raise_keyboard_interrupt)
    # Ctrl-C must drain and stop even when started from a script that ignores SIGINT
    # (background jobs of a non-interactive shell inherit SIG_IGN, and Python keeps it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    state = None
    progress = StartupProgress()
    print(f"full logs (dora, every node): {run_dir}", flush=True)
    try:
        launcher.up(say=progress.step)
        nodes = [n["id"] for n in yaml.safe_load(dataflow.read_text())["nodes"]]
        progress.step(f"starting the dataflow: {len(nodes)} nodes ({', '.join(nodes)})")
        uuid = launcher.start(dataflow, name=name)
        progress.step("waiting for the nodes to start (Python imports, opening cameras and arms)")
        launcher.wait_for_nodes(name, nodes, cfg.dora.start_timeout_s)
        progress.step("connecting to the dataflow's keyboard node")
        with connect_to(uuid, cfg.dora.start_timeout_s) as link:
            state = run_session(link, key_source(cfg), progress, str(cfg.record.dataset_root.resolve()))
    except (LaunchError, JoinError) as exc:
        progress.done()
        print(f"main.py: {exc} (dora logs: {run_dir})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        progress.done()
        print("\ninterrupted: stopping the dataflow without waiting for the saver", file=sys.stderr)
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a 2nd signal must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)                     # (it is bounded: dora's grace, then kill)
        launcher.stop()
        launcher.close()
    if state is None or state.problems():  # the reasons are in the console's summary
        print(f"main.py: recording did not finish cleanly (dora logs: {run_dir})", file=sys.stderr)
        return 1
    print(f"full logs: {run_dir}")
    return 0


def run_log_dir(name: str) -> Path:
    """Where a session's rendered dataflow and every log go: $XDG_STATE_HOME/operating-platform/logs/<name>."""
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    path = state / "operating-platform" / "logs" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["calibrate"]:  # interactive SO-101 calibration, writes <calibration_dir>/so101_<arm>.json
        from operating_platform.hardware.so101.calibrate import calibrate_command

        return calibrate_command(argv[1:])
    if {"-h", "--help"} & set(argv):
        print(help_text())
        return 0
    try:
        cfg = parse_config(argv)
        if note := free_default_name(cfg, argv):
            print(f"main.py: {note}")
        check_dataset_location(cfg)
    except (ConfigError, LocationError) as exc:
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
