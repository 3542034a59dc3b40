"""Render the recording dataflow for a console config.

The graph is built from data (one function per node kind), so a hardware variant
only changes node env (ARM_DRIVER=so101, CAMERA_SOURCE=opencv, ...), never the
wiring. The default config renders the same graph as the documented dataflow.yml
at the repository root (a test keeps them in step); the env blocks of both come
from the settings schema (dataflow/settings.py).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

import yaml

from operating_platform.dataflow.recorder import CAMERA_INPUT_PREFIX
from operating_platform.dataflow.settings import DEFAULTS, FIELDS, DataflowSettings, env_text, listed_settings, to_env

from .config import CameraSpec, ConsoleConfig, calibration_file, camera_specs

REPO_ROOT = Path(__file__).resolve().parents[2]
NODES_DIR = REPO_ROOT / "nodes"
ARM_TICK = "dora/timer/millis/20"
ARM_QUEUE_SIZE = 50  # ~1 s of joint messages: only the newest is sampled, the queue rides out hold-ups
SAVER_QUEUE_SIZE = 64  # frames buffered at the saver (~2 s at 30 fps); >= SAVER_WINDOW, so dora never drops


def _script(name: str, python: str) -> dict:
    return {"path": python, "args": str(NODES_DIR / f"{name}.py")}


def camera_node(spec: CameraSpec, cfg: ConsoleConfig, python: str) -> dict:
    env = {"CAMERA_NAME": spec.name}
    if not spec.is_sim:
        env.update(CAMERA_SOURCE="opencv", CAMERA_DEVICE=spec.source)
    return {
        "id": f"camera_{spec.name}",
        **_script("camera", python),
        "inputs": {"tick": f"dora/timer/hz/{cfg.record.fps}", "recorder_done": "recorder/done"},
        "outputs": ["image"],
        "env": env,
    }


def arm_node(role: str, cfg: ConsoleConfig, python: str) -> dict:
    env = {"ARM_ROLE": role}
    if cfg.robot.robot_type == "so101":
        port = cfg.robot.leader_port if role == "leader" else cfg.robot.follower_port
        env.update(ARM_PORT=port, ARM_CALIBRATION=str(calibration_file(cfg.robot, role).resolve()))
    inputs = {"tick": ARM_TICK}
    if role == "follower":
        inputs["action"] = "arm_leader/joint"
    inputs["recorder_done"] = "recorder/done"
    return {"id": f"arm_{role}", **_script("arm", python), "inputs": inputs, "outputs": ["joint"], "env": env}


KEYBOARD_TICK = "dora/timer/millis/50"  # how often the keyboard node looks at its socket: keys go out within 50 ms


def keyboard_node(python: str) -> dict:
    """Spawned like the others (a `path: dynamic` node makes dora 1.1 log an ERROR every run); a terminal
    program connects to its socket (dataflow/key_relay.py)."""
    return {
        "id": "keyboard",
        **_script("keyboard", python),
        "inputs": {"tick": KEYBOARD_TICK, "recorder_status": "recorder/status", "saver_status": "saver/status"},
        "outputs": ["key"],
    }


def recorder_node(cameras: list[CameraSpec], cfg: ConsoleConfig, python: str) -> dict:
    inputs = {"tick": f"dora/timer/hz/{cfg.record.fps}"}
    inputs.update({f"{CAMERA_INPUT_PREFIX}{c.name}": {"source": f"camera_{c.name}/image", "queue_size": cfg.record.fps}
                   for c in cameras})
    inputs.update(leader={"source": "arm_leader/joint", "queue_size": ARM_QUEUE_SIZE},
                  follower={"source": "arm_follower/joint", "queue_size": ARM_QUEUE_SIZE},
                  key="keyboard/key", saver_status="saver/status")
    return {"id": "recorder", **_script("recorder", python), "inputs": inputs, "outputs": ["episode", "status", "done"]}


def saver_node(python: str) -> dict:
    return {
        "id": "saver",
        **_script("saver", python),
        "inputs": {
            "episode": {"source": "recorder/episode", "queue_policy": "backpressure", "queue_size": SAVER_QUEUE_SIZE},
            "tick": "dora/timer/millis/250",
        },
        "outputs": ["status"],
    }


def dataflow_settings(cfg: ConsoleConfig) -> DataflowSettings:
    """The console's flags as the nodes' settings; the rest stay at the schema's defaults."""
    robot, record = cfg.robot, cfg.record
    from_flags = {f.name: getattr(record, f.name) for f in dataclasses.fields(record) if f.name in FIELDS}
    from_flags.update(root=str(record.dataset_root.resolve()), record_cameras=",".join(c.name for c in camera_specs(robot)),
                      camera_width=robot.camera_width, camera_height=robot.camera_height,
                      arm_driver="so101" if robot.robot_type == "so101" else "sim")
    return dataclasses.replace(DEFAULTS, **from_flags)


def dataflow_env(cfg: ConsoleConfig) -> dict[str, str]:
    """Settings every node may read (the keys of dataflow.yml's env block)."""
    return to_env(dataflow_settings(cfg))


# The documented dataflow files at the repository root: their env block is the schema's, with these
# settings changed (value, comment or None for the schema's); scripts/sync_dataflow_env.py writes them.
DATAFLOW_FILES = {
    "dataflow.yml": {},
    "dataflow_so101.yml": {"repo_id": ("so101_demo", None),
                           "camera_source": ("opencv", "real cameras or video files (OpenCV)"),
                           "arm_driver": ("so101", "Feetech STS3215 bus, 1 Mbaud")},
}
ENV_COMMENT_COLUMN = 33


def _yaml_value(value: object) -> str:
    text = env_text(value)
    plain = not isinstance(value, (bool, str)) or (text != "" and yaml.safe_load(text) == text)
    return text if plain else json.dumps(text)


def env_block(changes: dict[str, tuple[object, str | None]]) -> str:
    """The `env:` block of a dataflow file: every listed setting, grouped, with its comment."""
    lines = ["env:"]
    for f in listed_settings():
        if f.metadata["section"]:
            lines.append(f"  # --- {f.metadata['section']} ---")
        value, doc = changes.get(f.name, (getattr(DEFAULTS, f.name), None))
        line = f"  {f.metadata['env']}: {_yaml_value(value)}"
        doc = doc or f.metadata["doc"]
        lines.append(f"{line.ljust(ENV_COMMENT_COLUMN - 1)} # {doc}" if doc else line)
    return "\n".join(lines) + "\n"


def synced_dataflow_file(text: str, changes: dict[str, tuple[object, str | None]]) -> str:
    """`text` (a dataflow file) with its top-level env block replaced by the schema's."""
    match = ENV_BLOCK.search(text)
    if match is None:
        raise ValueError("no top-level `env:` block")
    return text[:match.start()] + env_block(changes) + text[match.end():]


ENV_BLOCK = re.compile(r"^env:\n(?:[ \t].*\n)*", re.MULTILINE)


def build_dataflow(cfg: ConsoleConfig, python: str = sys.executable) -> dict:
    cameras = camera_specs(cfg.robot)
    nodes = [camera_node(c, cfg, python) for c in cameras]
    nodes += [arm_node("leader", cfg, python), arm_node("follower", cfg, python), keyboard_node(python),
              recorder_node(cameras, cfg, python), saver_node(python)]
    return {"env": dataflow_env(cfg), "nodes": nodes}


def write_dataflow(cfg: ConsoleConfig, path: Path, python: str = sys.executable) -> Path:
    path.write_text(yaml.safe_dump(build_dataflow(cfg, python), sort_keys=False))
    return path
