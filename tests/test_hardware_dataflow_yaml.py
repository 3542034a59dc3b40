"""dataflow_so101.yml stays the same graph as dataflow.yml: only device settings differ, and they follow
the nodes' env contract (ARM_DRIVER/ARM_PORT/ARM_CALIBRATION, CAMERA_SOURCE/CAMERA_DEVICE)."""

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEVICE_ENV = {"ARM_DRIVER", "CAMERA_SOURCE", "REPO_ID"}


def load(name):
    return yaml.safe_load((REPO / name).read_text())


def test_same_graph_and_settings_apart_from_devices():
    sim, so101 = load("dataflow.yml"), load("dataflow_so101.yml")
    assert {k: v for k, v in sim["env"].items() if k not in DEVICE_ENV} == {
        k: v for k, v in so101["env"].items() if k not in DEVICE_ENV
    }
    assert so101["env"]["ARM_DRIVER"] == "so101" and so101["env"]["CAMERA_SOURCE"] == "opencv"
    strip = lambda node: {k: v for k, v in node.items() if k != "env"}  # noqa: E731
    assert [strip(n) for n in sim["nodes"]] == [strip(n) for n in so101["nodes"]]


def test_every_device_comes_from_the_shell_with_a_default():
    env = {node["id"]: node.get("env", {}) for node in load("dataflow_so101.yml")["nodes"]}
    assert env["arm_leader"]["ARM_PORT"] == "${LEADER_PORT:-/dev/ttyACM0}"
    assert env["arm_follower"]["ARM_PORT"] == "${FOLLOWER_PORT:-/dev/ttyACM1}"
    assert env["arm_leader"]["ARM_CALIBRATION"] == "${CALIBRATION_DIR:-calibration}/so101_leader.json"
    assert env["arm_follower"]["ARM_CALIBRATION"] == "${CALIBRATION_DIR:-calibration}/so101_follower.json"
    assert env["camera_top"]["CAMERA_DEVICE"] == "${TOP_CAMERA:-/dev/video0}"
    assert env["camera_wrist"]["CAMERA_DEVICE"] == "${WRIST_CAMERA:-/dev/video2}"
    assert (REPO / "calibration" / "so101_leader.json").is_file()  # the default CALIBRATION_DIR resolves
