"""The settings schema (dataflow/settings.py) is the one place a dataflow setting's default lives: the
documented dataflow files, the nodes' env readers and the console's flags all agree with it."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from operating_platform.core.config import RecordConfig, RobotConfig, parse_config
from operating_platform.core.dataflow import DATAFLOW_FILES, SAVER_QUEUE_SIZE, dataflow_env, synced_dataflow_file
from operating_platform.dataflow.arm import arm_from_env
from operating_platform.dataflow.recorder import RecorderConfig
from operating_platform.dataflow.saver import SaverConfig
from operating_platform.dataflow.settings import DEFAULTS, FIELDS, EnvSettings, env_name, listed_settings, to_env

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(DATAFLOW_FILES))
def test_dataflow_files_hold_the_schemas_env_block(name):
    text = (REPO / name).read_text()
    assert synced_dataflow_file(text, DATAFLOW_FILES[name]) == text, (
        f"{name}'s env block differs from operating_platform/dataflow/settings.py: run python scripts/sync_dataflow_env.py")
    documented = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in yaml.safe_load(text)["env"].items()}
    changed = {env_name(field): value for field, (value, _) in DATAFLOW_FILES[name].items()}
    assert documented == {**to_env(DEFAULTS), **{k: str(v) for k, v in changed.items()}}


def test_an_edited_default_is_caught_and_the_sync_script_agrees_with_the_files():
    text = (REPO / "dataflow.yml").read_text()
    edited = text.replace("ASYNC_SAVE_QUEUE_SIZE: 10 ", "ASYNC_SAVE_QUEUE_SIZE: 12 ")
    assert edited != text and synced_dataflow_file(edited, {}) == text
    check = subprocess.run([sys.executable, str(REPO / "scripts" / "sync_dataflow_env.py"), "--check"],
                           capture_output=True, text=True, timeout=60, cwd=REPO)
    assert check.returncode == 0, check.stdout + check.stderr


def test_every_setting_round_trips_through_the_environment():
    assert len({f.metadata["env"] for f in FIELDS.values()}) == len(FIELDS)
    env = to_env(DEFAULTS)
    read = EnvSettings(env, "test")
    assert {f.name: getattr(read, f.name) for f in listed_settings()} == {
        f.name: getattr(DEFAULTS, f.name) for f in listed_settings()}
    unset = EnvSettings({}, "test")
    assert all(getattr(unset, name) == getattr(DEFAULTS, name) for name in FIELDS)


def test_node_configs_default_to_the_schema():
    assert SaverConfig.from_env({}) == SaverConfig()
    assert RecorderConfig.from_env({}) == RecorderConfig()
    saver = SaverConfig()
    assert (saver.async_save_queue_size, saver.async_save_max_retries, saver.async_save_timeout_s) == (
        DEFAULTS.async_save_queue_size, DEFAULTS.async_save_max_retries, DEFAULTS.async_save_timeout_s)
    assert RecorderConfig().save_timeout_s == DEFAULTS.async_save_timeout_s
    assert RecorderConfig().cameras == DEFAULTS.record_cameras.split(",")
    assert DEFAULTS.saver_window <= SAVER_QUEUE_SIZE  # the recorder's credits fit the saver's backpressure queue


def test_console_flag_defaults_are_the_schemas():
    for config in (RecordConfig, RobotConfig):
        shared = [f for f in dataclasses.fields(config) if f.name in FIELDS and f.name != "robot_type"]
        assert shared, config
        for f in shared:
            assert f.default == getattr(DEFAULTS, f.name), f.name


def test_console_flags_reach_the_nodes_through_the_rendered_env(tmp_path):
    cfg = parse_config([f"--record.root={tmp_path / 'ds'}", "--record.async_save_queue_size=20",
                        "--record.async_save_max_retries=5", "--record.use_async_save=false", "--record.fps=15",
                        "--record.episode_time_s=2.5", "--record.resume", "--robot.cameras=front=sim"])
    env = dataflow_env(cfg)
    saver, recorder = SaverConfig.from_env(env), RecorderConfig.from_env(env)
    assert (saver.async_save_queue_size, saver.async_save_max_retries, saver.use_async_save, saver.resume) == (20, 5, False, True)
    assert saver.dataset_root == (tmp_path / "ds").resolve() and saver.fps == 15
    assert recorder.wait_for_save and recorder.episode_time_s == 2.5 and recorder.cameras == ["front"]
    assert parse_config(["--record.use_async_save"]).record.use_async_save is True


@pytest.mark.parametrize("reader, env, message", [
    (SaverConfig.from_env, {"ASYNC_SAVE_QUEUE_SIZE": "ten"}, "saver: environment ASYNC_SAVE_QUEUE_SIZE='ten' is not a valid int"),
    (RecorderConfig.from_env, {"USE_ASYNC_SAVE": "maybe"}, "recorder: environment USE_ASYNC_SAVE='maybe' is not a valid boolean"),
    (arm_from_env, {"ARM_DRIVER": "nope"}, "ARM_DRIVER='nope'"),
])
def test_a_bad_value_names_the_node_and_the_variable(reader, env, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        reader(env)
