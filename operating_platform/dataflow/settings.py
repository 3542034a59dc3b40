"""The settings schema of the recording dataflow: every environment setting a node reads, written once.

`DataflowSettings` holds each setting's default, its environment name and what it does.
From it come the nodes' `from_env` readers (`EnvSettings`), the console's flag defaults
(core/config.py), the `env:` the console renders (core/dataflow.py) and the `env:` blocks
of dataflow.yml / dataflow_so101.yml (`python scripts/sync_dataflow_env.py` writes them;
a test fails when a file disagrees). A bad value gets an error naming the node and variable.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from operating_platform import saving
from operating_platform.dataset import format as fmt

T = TypeVar("T")
TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no")


def env_bool(raw: str) -> bool:
    if raw.lower() in TRUE:
        return True
    if raw.lower() in FALSE:
        return False
    raise ValueError(f"{raw!r} is not a boolean (true/false)")


env_bool.__name__ = "boolean"


def setting(env: dict[str, str], node: str, name: str, cast: Callable[[str], T], default: T) -> T:
    """env[name] converted by `cast`; `default` when unset or empty."""
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return cast(raw)
    except ValueError:
        raise ValueError(f"{node}: environment {name}={raw!r} is not a valid {cast.__name__}") from None


def _env(name: str, default, doc: str = "", *, section: str = "", listed: bool = True):
    """One setting: its environment `name`, `default` and `doc`. `listed`: in the dataflow files' env block
    (else a node-level or tuning setting, read when set); `section` starts a new group there."""
    return field(default=default, metadata={"env": name, "doc": doc, "section": section, "listed": listed})


@dataclass(frozen=True)
class DataflowSettings:
    repo_id: str = _env("REPO_ID", "sim_demo", "dataset name; stored in DATASET_ROOT (default data/<REPO_ID>)",
                        section="dataset (saver)")
    root: str = _env("DATASET_ROOT", "", "dataset directory; empty = data/<REPO_ID>")
    resume: bool = _env("RESUME", False, "false: refuse a root that holds a dataset (a 2nd run never mixes in); true: append")
    dataset_version: str = _env("DATASET_VERSION", fmt.DEFAULT_CODEBASE_VERSION,
                                "LeRobot format of a new dataset: v3.0 (LeRobot >= 0.4) | v2.1 (LeRobot 0.3.x)")
    robot_type: str = _env("ROBOT_TYPE", "so101", "info.json robot_type")
    vcodec: str = _env("VCODEC", fmt.DEFAULT_VIDEO_CODEC, "libsvtav1 (LeRobot default) | libx264 | h264 | ...")
    use_async_save: bool = _env("USE_ASYNC_SAVE", True, "false: recording pauses after each episode until it is saved")
    async_save_queue_size: int = _env("ASYNC_SAVE_QUEUE_SIZE", saving.DEFAULT_MAX_QUEUE_SIZE,
                                      "episodes waiting to be committed; when full, saving waits (never drops)")
    async_save_max_retries: int = _env("ASYNC_SAVE_MAX_RETRIES", saving.DEFAULT_MAX_RETRIES, "attempts to commit an episode again after a failure")
    async_save_timeout_s: float = _env("ASYNC_SAVE_TIMEOUT_S", saving.DEFAULT_SAVE_TIMEOUT_S, "longest time one episode's commit may take")
    batch_encoding_size: int = _env("BATCH_ENCODING_SIZE", 1, ">1: encode videos every N episodes (no live encoding)")
    saver_nice: int = _env("SAVER_NICE", 5, "CPU niceness added to the saver (encoding yields to capture)")
    fps: int = _env("FPS", 30, "sampling rate; the timers below tick at 30 Hz, so FPS <= 30 here", section="episodes (recorder)")
    num_episodes: int = _env("NUM_EPISODES", 3, "episodes recorded before the dataflow stops on its own")
    episode_time_s: float = _env("EPISODE_TIME_S", 4.0, "length of an episode (key n ends it earlier)")
    reset_time_s: float = _env("RESET_TIME_S", 1.0, "pause between episodes (key p or n skips it)")
    single_task: str = _env("TASK", "pick the cube and place it in the box")
    record_cameras: str = _env("RECORD_CAMERAS", "top,wrist", "must match the camera_<name> inputs of the recorder")
    max_staleness_s: float = _env("MAX_STALENESS_S", 1.0, "a sample whose newest input is older than this is skipped (counted)")
    input_timeout_s: float = _env("INPUT_TIMEOUT_S", 5.0, "a camera/arm silent this long (or exited) ends the session with an error")
    saver_timeout_s: float = _env("SAVER_TIMEOUT_S", 20.0, "a saver silent this long is hung: recording stops with an error")
    saver_window: int = _env("SAVER_WINDOW", 60, "episode messages in flight before the saver acknowledges (<= its queue_size)")
    timing_policy: str = _env("TIMING_POLICY", "warn", "episode sampled slower than real time: warn | discard | stop")
    start_timeout_s: float = _env("START_TIMEOUT_S", 60.0, "every input and the saver must have spoken by then", listed=False)
    saver_window_mb: int = _env("SAVER_WINDOW_MB", 512, "... and at most this many MiB in flight (dora's shared memory)",
                                listed=False)
    recorder_outbox_mb: int = _env("RECORDER_OUTBOX_MB", 256, "frames waiting for the saver's credits; when full, sampling pauses",
                                   listed=False)
    camera_source: str = _env("CAMERA_SOURCE", "sim", "sim | opencv (then set CAMERA_DEVICE per camera node)", section="devices")
    camera_width: int = _env("CAMERA_WIDTH", 640, "every camera is opened (and recorded) at WIDTH x HEIGHT")
    camera_height: int = _env("CAMERA_HEIGHT", 480)
    arm_driver: str = _env("ARM_DRIVER", "sim", "sim | so101 (then set ARM_PORT and ARM_CALIBRATION per arm node)")
    # per node (set in a node's own env by the dataflow)
    camera_name: str = _env("CAMERA_NAME", "camera", listed=False)
    camera_device: str = _env("CAMERA_DEVICE", "", "opencv: index, /dev/videoN, by-path device or video file", listed=False)
    camera_fps: int = _env("CAMERA_FPS", 0, "rate requested from the camera; 0 = FPS", listed=False)
    arm_role: str = _env("ARM_ROLE", "leader", "leader | follower", listed=False)
    arm_port: str = _env("ARM_PORT", "", "so101: the arm's serial bus", listed=False)
    arm_calibration: str = _env("ARM_CALIBRATION", "", "so101: the arm's calibration json", listed=False)
    arm_name: str = _env("ARM_NAME", "", "sim: the simulated leader's name; empty = ARM_ROLE", listed=False)


DEFAULTS = DataflowSettings()
FIELDS = {f.name: f for f in dataclasses.fields(DataflowSettings)}
TYPES = typing.get_type_hints(DataflowSettings)
CASTS = {bool: env_bool, int: int, float: float, str: str}


def env_name(name: str) -> str:
    return FIELDS[name].metadata["env"]


def listed_settings() -> list[dataclasses.Field]:
    """The settings of the dataflow files' top-level env block, in their order."""
    return [f for f in FIELDS.values() if f.metadata["listed"]]


def env_text(value: object) -> str:
    """How a setting's value is written into an environment (what `EnvSettings` reads back)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def to_env(settings: DataflowSettings) -> dict[str, str]:
    """The dataflow files' top-level env block for `settings`, as strings."""
    return {f.metadata["env"]: env_text(getattr(settings, f.name)) for f in listed_settings()}


class EnvSettings:
    """The schema as one node reads it: each setting is read from `env` (and checked) when asked for."""

    def __init__(self, env: dict[str, str], node: str):
        self._env, self._node = env, node

    def __getattr__(self, name: str):
        if name not in FIELDS:
            raise AttributeError(name)
        f = FIELDS[name]
        return setting(self._env, self._node, f.metadata["env"], CASTS[TYPES[name]], f.default)

    def shared_with(self, config: type) -> dict:
        """The settings named like the fields of the dataclass `config`, as its keyword arguments."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(config) if f.name in FIELDS}
