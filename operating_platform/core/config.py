"""The operator console's flags (draccus): --robot.*, --record.*, --dora.*.

Defaults shared with the dataflow's env settings come from its schema (dataflow/settings.py).
Names follow DoRobot/LeRobot (`--robot.robot_type`, alias `--robot.type`,
`--record.use_async_save`, ...). `parse_config` turns every bad flag or impossible
combination into a `ConfigError` with one line naming the flag; main.py prints it
and exits 2. The dataset location itself is checked by preflight.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import draccus

from operating_platform.dataflow.keyboard import KeyScriptError, parse_key_script
from operating_platform.dataflow.settings import DEFAULTS
from operating_platform.hardware.so101.calibrate import user_calibration_dir

ROBOT_TYPES = ("sim", "so101")
FLAG_ALIASES = {"--robot.type": "--robot.robot_type"}
CAMERA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class ConfigError(ValueError):
    """One clear line about a flag or a combination of flags."""


@dataclass
class RobotConfig:
    robot_type: str = "sim"
    """sim (simulated arms) | so101 (real SO-101 leader + follower on Feetech buses). Alias: --robot.type"""
    calibration_dir: str = field(default_factory=lambda: str(user_calibration_dir()))
    """Folder with so101_leader.json and so101_follower.json (so101 only); `main.py calibrate` writes there. The repository's calibration/ holds sample files."""
    leader_port: str = ""
    """Serial port of the leader arm, e.g. /dev/ttyACM0 (so101 only)."""
    follower_port: str = ""
    """Serial port of the follower arm, e.g. /dev/ttyACM1 (so101 only)."""
    cameras: str = ",".join(f"{name}=sim" for name in DEFAULTS.record_cameras.split(","))
    """Comma-separated name=source; source is `sim`, a device index (0), a device path (/dev/video2) or a video file."""
    camera_width: int = DEFAULTS.camera_width
    """Width every camera is opened (and recorded) at."""
    camera_height: int = DEFAULTS.camera_height
    """Height every camera is opened (and recorded) at."""


@dataclass
class RecordConfig:
    repo_id: str = DEFAULTS.repo_id
    """Dataset name."""
    root: str = DEFAULTS.root
    """Dataset directory; empty: data/<repo_id> (relative to where you run the console)."""
    single_task: str = DEFAULTS.single_task
    """Task description stored with every episode."""
    fps: int = DEFAULTS.fps
    """Frames recorded per second (cameras are read at this rate too)."""
    num_episodes: int = DEFAULTS.num_episodes
    """Episodes to record before stopping on its own (e ends earlier)."""
    episode_time_s: float = DEFAULTS.episode_time_s
    """Length of an episode (n ends it earlier)."""
    reset_time_s: float = DEFAULTS.reset_time_s
    """Pause between episodes to reset the scene (key p skips it)."""
    video: bool = True
    """Cameras are stored as videos (the only storage the writer offers)."""
    vcodec: str = DEFAULTS.vcodec
    """Video codec: libsvtav1 (LeRobot's default), libx264, h264, ..."""
    dataset_version: str = DEFAULTS.dataset_version
    """LeRobot format of a new dataset: v3.0 (LeRobot >= 0.4) or v2.1 (LeRobot 0.3.x)."""
    resume: bool = DEFAULTS.resume
    """Append to the dataset at root instead of refusing because it exists."""
    use_async_save: bool = DEFAULTS.use_async_save
    """false: recording pauses after each episode until it is committed (same dataset format)."""
    async_save_queue_size: int = DEFAULTS.async_save_queue_size
    """Episodes waiting to be committed; when full, save_episode() waits for a slot (never drops)."""
    async_save_max_retries: int = DEFAULTS.async_save_max_retries
    """Attempts to commit an episode again after a failure."""
    async_save_timeout_s: float = DEFAULTS.async_save_timeout_s
    """Longest time one episode's commit may take."""
    batch_encoding_size: int = DEFAULTS.batch_encoding_size
    """Encode videos every N episodes (1: encode live while recording)."""
    keys: str = ""
    """Scripted keys instead of the terminal, e.g. "n@4,r@2,e@3": key@seconds after the previous key, counted from the start of the next take after n or r."""

    @property
    def dataset_root(self) -> Path:
        return Path(self.root) if self.root else Path("data") / self.repo_id


@dataclass
class DoraConfig:
    coordinator: str = ""
    """host:port of a running `dora up` coordinator; empty: start a private coordinator + daemon."""
    start_timeout_s: float = 60.0
    """How long to wait for the dataflow to come up before giving up."""


@dataclass
class ConsoleConfig:
    robot: RobotConfig = field(default_factory=RobotConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    dora: DoraConfig = field(default_factory=DoraConfig)


@dataclass(frozen=True)
class CameraSpec:
    name: str
    source: str  # "sim" or an OpenCV device (index, path, file)

    @property
    def is_sim(self) -> bool:
        return self.source == "sim"


def camera_specs(robot: RobotConfig) -> list[CameraSpec]:
    specs = []
    for item in (p.strip() for p in robot.cameras.split(",")):
        if not item:
            continue
        # name=source or name:source (the first separator counts: by-path device names hold colons)
        cut = min((i for i in (item.find("="), item.find(":")) if i >= 0), default=-1)
        name, source = (item[:cut], item[cut + 1:]) if cut >= 0 else (item, "")
        if not source:
            raise ConfigError(f"--robot.cameras: {item!r} must be name=source or name:source "
                              "(source: sim, 0, /dev/video2, file.mp4)")
        if not CAMERA_NAME.match(name):
            raise ConfigError(f"--robot.cameras: camera name {name!r} must be a letter followed by letters, digits or _")
        specs.append(CameraSpec(name, source))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"--robot.cameras: camera names repeat: {names}")
    return specs


BOOL_WORDS = ("true", "false", "yes", "no", "on", "off", "1", "0")


def flag_fields(config=ConsoleConfig) -> list[tuple[str, dataclasses.Field, type]]:
    """Every `--group.name` flag of the console with its dataclass field and type, in declaration order."""
    flags = []
    for group in dataclasses.fields(config):
        group_type = type_of_group(group.name)
        hints = typing.get_type_hints(group_type)
        flags += [(f"--{group.name}.{f.name}", f, hints[f.name]) for f in dataclasses.fields(group_type)]
    return flags


def _normalise_argv(argv: list[str]) -> list[str]:
    """Aliases renamed; a bare boolean flag (`--record.resume`) means `=true`; a flag and its value
    given as two words (`--record.fps 15`) become one."""
    booleans = {name for name, _, kind in flag_fields() if kind is bool}
    known = {name for name, _, _ in flag_fields()}
    out, i = [], 0
    while i < len(argv):
        flag, eq, value = argv[i].partition("=")
        flag = FLAG_ALIASES.get(flag, flag)
        following = argv[i + 1] if i + 1 < len(argv) else None
        if not eq and flag in booleans:
            if following is not None and following.lower() in BOOL_WORDS:
                eq, value, i = "=", following, i + 1
            else:
                eq, value = "=", "true"
        elif not eq and flag in known:
            if following is None or following.startswith("--"):
                raise ConfigError(f"{flag}: expected a value ({flag}=VALUE)")
            eq, value, i = "=", following, i + 1
        out.append(flag + eq + value)
        i += 1
    return out


USAGE = """\
usage: main.py [--GROUP.FLAG=VALUE ...]     record a dataset (simulated arms and cameras by default)
       main.py calibrate --robot.arm=leader|follower --robot.port=PORT [--robot.calibration_dir=DIR]
                                            calibrate one SO-101 arm (main.py calibrate --help)

Keys while recording: n end the episode and save it, r re-record it (discard), p proceed from the
reset pause, e exit (pending saves are drained first); Ctrl-C = e, twice = stop without waiting.
A boolean flag alone means true (--record.resume = --record.resume=true).
Exit codes: 0 done, 1 recording failed, 2 bad flags or unusable dataset location."""


def help_text() -> str:
    """--help: each flag once, with its default and what it does."""
    from draccus.wrappers.docstring import get_attribute_docstring

    lines = [USAGE]
    group = None
    for name, f, kind in flag_fields():
        if name.split(".")[0] != group:
            group = name.split(".")[0]
            lines.append(f"\n{group.lstrip('-')}:")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = str(default).lower() if kind is bool else (repr(default) if default == "" else default)
        doc = get_attribute_docstring(type_of_group(group), f.name).docstring_below
        lines.append(f"  {name}={kind.__name__.upper()}  (default: {shown})\n      {doc}")
    return "\n".join(lines)


def type_of_group(flag_group: str) -> type:
    return typing.get_type_hints(ConsoleConfig)[flag_group.lstrip("-")]


def parse_config(argv: list[str]) -> ConsoleConfig:
    """Flags -> a checked ConsoleConfig; raises ConfigError (one line) on anything wrong."""
    try:
        cfg = draccus.parse(ConsoleConfig, args=_normalise_argv(argv), exit_on_error=False)
    except draccus.utils.DecodingError as exc:
        path, message = exc.args if len(exc.args) == 2 else ((), str(exc))
        raise ConfigError(f"--{'.'.join(path)}: {message}") from None
    except (draccus.utils.DraccusException, argparse.ArgumentError) as exc:
        raise ConfigError(" ".join(str(exc).split())) from None
    check_config(cfg)
    return cfg


def check_config(cfg: ConsoleConfig) -> None:
    robot, record = cfg.robot, cfg.record
    if robot.robot_type not in ROBOT_TYPES:
        raise ConfigError(f"--robot.robot_type={robot.robot_type!r}: expected one of {', '.join(ROBOT_TYPES)}")
    positive = {"fps": record.fps, "num_episodes": record.num_episodes, "episode_time_s": record.episode_time_s,
                "async_save_queue_size": record.async_save_queue_size, "async_save_timeout_s": record.async_save_timeout_s,
                "batch_encoding_size": record.batch_encoding_size}
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"--record.{name}={value}: must be > 0")
    for name, value in {"reset_time_s": record.reset_time_s, "async_save_max_retries": record.async_save_max_retries}.items():
        if value < 0:
            raise ConfigError(f"--record.{name}={value}: must be >= 0")
    if robot.camera_width <= 0 or robot.camera_height <= 0:
        raise ConfigError(f"--robot.camera_width/height={robot.camera_width}x{robot.camera_height}: must be > 0")
    if not record.repo_id.strip():
        raise ConfigError("--record.repo_id: must not be empty")
    cameras = camera_specs(robot)
    if not record.video and cameras:
        raise ConfigError("--record.video=false: the dataset writer stores cameras only as video; "
                          "remove the cameras (--robot.cameras=) or keep --record.video=true")
    if not record.use_async_save and record.batch_encoding_size > 1:
        raise ConfigError("--record.use_async_save=false with --record.batch_encoding_size>1: "
                          "synchronous saving commits each episode before the next; use batch_encoding_size=1")
    if robot.robot_type == "so101":
        for flag in ("leader_port", "follower_port"):
            if not getattr(robot, flag):
                raise ConfigError(f"--robot.robot_type=so101 needs --robot.{flag} (e.g. /dev/ttyACM0)")
        if robot.leader_port == robot.follower_port:
            raise ConfigError(f"--robot.leader_port and --robot.follower_port are both {robot.leader_port}: each arm has its own bus")
        for role in ("leader", "follower"):
            path = calibration_file(robot, role)
            if not path.is_file():
                raise ConfigError(f"--robot.calibration_dir={robot.calibration_dir}: {path} not found (calibrate the {role} arm first)")
    if record.dataset_version not in ("v3.0", "v2.1"):
        raise ConfigError(f"--record.dataset_version={record.dataset_version!r}: expected v3.0 or v2.1")
    try:
        parse_key_script(record.keys)
    except KeyScriptError as exc:
        raise ConfigError(f"--record.keys: {exc}") from None
    if cfg.dora.coordinator and not re.match(r"^[^:\s]+(:\d+)?$", cfg.dora.coordinator):
        raise ConfigError(f"--dora.coordinator={cfg.dora.coordinator!r}: expected host or host:port")


def calibration_file(robot: RobotConfig, role: str) -> Path:
    return Path(robot.calibration_dir) / f"so101_{role}.json"
