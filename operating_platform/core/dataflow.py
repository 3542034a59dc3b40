"""Render the recording dataflow for a console config.

The graph is built from data (one function per node kind), so a hardware variant
only changes node env (ARM_DRIVER=so101, CAMERA_SOURCE=opencv, ...), never the
wiring. The default config renders the same graph and env keys as the
hand-documented dataflow.yml at the repository root (a test keeps them in step).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from operating_platform.dataflow.recorder import CAMERA_INPUT_PREFIX

from .config import CameraSpec, ConsoleConfig, calibration_file, camera_specs

REPO_ROOT = Path(__file__).resolve().parents[2]
NODES_DIR = REPO_ROOT / "nodes"
ARM_TICK = "dora/timer/millis/20"
ARM_QUEUE_SIZE = 50  # ~1 s of joint messages: only the newest is sampled, the queue rides out hold-ups
SAVER_QUEUE_SIZE = 64  # frames buffered at the saver (~2 s at 30 fps) before the recorder is held back
SAVER_WINDOW = 60  # the recorder's credits: messages in flight, at most SAVER_QUEUE_SIZE, so dora never drops


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


def keyboard_node() -> dict:
    return {
        "id": "keyboard",
        "path": "dynamic",
        "inputs": {"recorder_status": "recorder/status", "saver_status": "saver/status"},
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


def dataflow_env(cfg: ConsoleConfig) -> dict[str, str]:
    """Settings every node may read (same keys as dataflow.yml's env block)."""
    robot, record = cfg.robot, cfg.record
    flag = lambda b: "true" if b else "false"  # noqa: E731
    return {
        "REPO_ID": record.repo_id,
        "DATASET_ROOT": str(record.dataset_root.resolve()),
        "RESUME": flag(record.resume),
        "DATASET_VERSION": record.dataset_version,
        "ROBOT_TYPE": "so101",
        "VCODEC": record.vcodec,
        "USE_ASYNC_SAVE": flag(record.use_async_save),
        "ASYNC_SAVE_QUEUE_SIZE": str(record.async_save_queue_size),
        "ASYNC_SAVE_MAX_RETRIES": str(record.async_save_max_retries),
        "ASYNC_SAVE_TIMEOUT_S": str(record.async_save_timeout_s),
        "BATCH_ENCODING_SIZE": str(record.batch_encoding_size),
        "SAVER_NICE": "5",
        "FPS": str(record.fps),
        "NUM_EPISODES": str(record.num_episodes),
        "EPISODE_TIME_S": str(record.episode_time_s),
        "RESET_TIME_S": str(record.reset_time_s),
        "TASK": record.single_task,
        "RECORD_CAMERAS": ",".join(c.name for c in camera_specs(robot)),
        "MAX_STALENESS_S": "1",
        "INPUT_TIMEOUT_S": "5",
        "SAVER_TIMEOUT_S": "20",
        "SAVER_WINDOW": str(SAVER_WINDOW),
        "TIMING_POLICY": "warn",
        "CAMERA_SOURCE": "sim",
        "CAMERA_WIDTH": str(robot.camera_width),
        "CAMERA_HEIGHT": str(robot.camera_height),
        "ARM_DRIVER": "so101" if robot.robot_type == "so101" else "sim",
    }


def build_dataflow(cfg: ConsoleConfig, python: str = sys.executable) -> dict:
    cameras = camera_specs(cfg.robot)
    nodes = [camera_node(c, cfg, python) for c in cameras]
    nodes += [arm_node("leader", cfg, python), arm_node("follower", cfg, python), keyboard_node(),
              recorder_node(cameras, cfg, python), saver_node(python)]
    return {"env": dataflow_env(cfg), "nodes": nodes}


def write_dataflow(cfg: ConsoleConfig, path: Path, python: str = sys.executable) -> Path:
    path.write_text(yaml.safe_dump(build_dataflow(cfg, python), sort_keys=False))
    return path
