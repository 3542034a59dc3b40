"""Console flags: defaults, alias, one-line errors with exit 2, --help, and the rendered dataflow
(same graph as the documented dataflow.yml, accepted by `dora validate`)."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from operating_platform.core.config import ConfigError, parse_config
from operating_platform.core.dataflow import build_dataflow, write_dataflow
from operating_platform.core.launcher import dora_binary

REPO = Path(__file__).resolve().parents[1]
MAIN = REPO / "operating_platform" / "core" / "main.py"


def test_defaults_and_alias(tmp_path):
    cfg = parse_config([f"--record.root={tmp_path / 'ds'}"])
    assert cfg.robot.robot_type == "sim" and cfg.record.use_async_save and cfg.record.num_episodes == 3
    cfg = parse_config(["--robot.type=sim", "--record.use_async_save=false", "--record.async_save_queue_size=20",
                        "--record.keys=n@1,e@2", f"--record.root={tmp_path / 'ds'}"])
    assert not cfg.record.use_async_save and cfg.record.async_save_queue_size == 20


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--record.fps=0"], "--record.fps=0: must be > 0"),
        (["--record.fps=abc"], "--record.fps: Couldn't parse 'abc'"),
        (["--robot.type=ur5"], "--robot.robot_type='ur5': expected one of sim, so101"),
        (["--robot.robot_type=so101"], "needs --robot.leader_port"),
        (["--robot.robot_type=so101", "--robot.leader_port=/dev/a", "--robot.follower_port=/dev/a"], "each arm has its own bus"),
        (["--robot.robot_type=so101", "--robot.leader_port=/dev/a", "--robot.follower_port=/dev/b",
          "--robot.calibration_dir=/nonexistent"], "so101_leader.json not found"),
        (["--robot.cameras=top"], "must be name=source"),
        (["--robot.cameras=top=sim,top=sim"], "camera names repeat"),
        (["--record.keys=n@1,q"], "unknown key 'q'"),
        (["--record.video=false"], "stores cameras only as video"),
        (["--record.use_async_save=false", "--record.batch_encoding_size=2"], "use batch_encoding_size=1"),
        (["--record.bogus=1"], "unrecognized arguments"),
    ],
)
def test_bad_flags_raise_one_clear_line(argv, message, tmp_path):
    with pytest.raises(ConfigError, match=None) as err:
        parse_config(argv + [f"--record.root={tmp_path / 'ds'}"])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_main_exits_2_with_one_line_and_help_lists_every_flag():
    bad = subprocess.run([sys.executable, str(MAIN), "--record.num_episodes=-1"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "--record.num_episodes=-1: must be > 0" in bad.stderr
    help_ = subprocess.run([sys.executable, str(MAIN), "--help"], capture_output=True, text=True, timeout=60)
    assert help_.returncode == 0
    for flag in ("--robot.robot_type", "--robot.calibration_dir", "--robot.cameras", "--record.repo_id", "--record.root",
                 "--record.single_task", "--record.fps", "--record.num_episodes", "--record.episode_time_s",
                 "--record.reset_time_s", "--record.video", "--record.vcodec", "--record.resume",
                 "--record.use_async_save", "--record.async_save_queue_size", "--record.async_save_max_retries",
                 "--record.async_save_timeout_s", "--record.batch_encoding_size", "--record.keys", "--dora.coordinator"):
        assert flag in help_.stdout, flag
    assert "(default: true)" in help_.stdout and "(default: 10)" in help_.stdout
    assert "calibrate --robot.arm" in help_.stdout and "n end the episode" in help_.stdout
    flag_lines = [line.split("=")[0].strip() for line in help_.stdout.splitlines() if line.startswith("  --")]
    assert len(flag_lines) == len(set(flag_lines)), "every flag is listed once"
    assert "--config_path" not in help_.stdout


@pytest.mark.parametrize("argv, resume, async_save", [
    (["--record.resume"], True, True),
    (["--record.use_async_save"], False, True),
    (["--record.use_async_save", "false", "--record.resume"], True, False),
    (["--record.use_async_save=false", "--record.resume=true"], True, False),
    (["--record.resume", "--record.use_async_save=no"], True, False),
])
def test_boolean_flags_alone_mean_true(argv, resume, async_save, tmp_path):
    cfg = parse_config([*argv, f"--record.root={tmp_path / 'ds'}"])
    assert (cfg.record.resume, cfg.record.use_async_save) == (resume, async_save)


def test_a_flag_and_its_value_may_be_two_words(tmp_path):
    cfg = parse_config(["--record.fps", "15", "--robot.type", "sim", "--record.root", str(tmp_path / "ds")])
    assert cfg.record.fps == 15


@pytest.mark.parametrize("argv", [["--record.fps"], ["--record.repo_id", "--record.resume"], ["--robot.cameras"]])
def test_a_flag_missing_its_value_exits_2_with_one_line(argv, tmp_path):
    result = subprocess.run([sys.executable, str(MAIN), f"--record.root={tmp_path / 'ds'}", *argv],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "expected a value" in result.stderr, result.stderr


def _graph(dataflow):
    def source(spec):
        return spec["source"] if isinstance(spec, dict) else spec

    return {n["id"]: ({k: source(v) for k, v in n.get("inputs", {}).items()}, n.get("outputs", [])) for n in dataflow["nodes"]}


def test_default_config_renders_the_graph_of_dataflow_yml(tmp_path):
    documented = yaml.safe_load((REPO / "dataflow.yml").read_text())
    rendered = build_dataflow(parse_config([f"--record.root={tmp_path / 'ds'}"]))
    assert _graph(rendered) == _graph(documented)
    assert set(rendered["env"]) == set(documented["env"])
    saver = next(n for n in rendered["nodes"] if n["id"] == "saver")
    assert saver["inputs"]["episode"]["queue_policy"] == "backpressure"


def test_so101_variant_changes_only_node_env_and_dora_validates_it(tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    for role in ("leader", "follower"):
        (calib / f"so101_{role}.json").write_text("{}")
    cfg = parse_config(["--robot.type=so101", "--robot.leader_port=/dev/ttyACM0", "--robot.follower_port=/dev/ttyACM1",
                        f"--robot.calibration_dir={calib}", "--robot.cameras=top=0,wrist=/dev/video2",
                        f"--record.root={tmp_path / 'ds'}"])
    rendered = build_dataflow(cfg)
    sim = build_dataflow(parse_config([f"--record.root={tmp_path / 'ds'}"]))
    assert _graph(rendered) == _graph(sim)
    nodes = {n["id"]: n for n in rendered["nodes"]}
    assert nodes["arm_follower"]["env"]["ARM_PORT"] == "/dev/ttyACM1" and rendered["env"]["ARM_DRIVER"] == "so101"
    assert nodes["camera_wrist"]["env"] == {"CAMERA_NAME": "wrist", "CAMERA_SOURCE": "opencv", "CAMERA_DEVICE": "/dev/video2"}
    path = write_dataflow(cfg, tmp_path / "dataflow.yml")
    for yml in (path, REPO / "dataflow.yml"):
        result = subprocess.run([dora_binary(), "validate", str(yml)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_cameras_accept_name_colon_source_and_by_path_devices():
    from operating_platform.core.config import camera_specs

    cfg = parse_config(["--robot.cameras=top:/dev/video0,wrist=/dev/v4l/by-path/pci-0000:00:14.0-usb-0:1:1.0-video-index0"])
    assert [(c.name, c.source) for c in camera_specs(cfg.robot)] == [
        ("top", "/dev/video0"), ("wrist", "/dev/v4l/by-path/pci-0000:00:14.0-usb-0:1:1.0-video-index0")]


def test_unusable_devices_stop_the_console_before_dora_with_one_message_each(tmp_path):
    """Wrong serial ports and a missing camera are named up front; no dataflow is started."""
    main = Path(__file__).resolve().parents[1] / "operating_platform" / "core" / "main.py"
    result = subprocess.run(
        [sys.executable, str(main), "--robot.type=so101", f"--robot.calibration_dir={REPO / 'calibration'}",
         f"--robot.leader_port={tmp_path}/ttyA",
         f"--robot.follower_port={tmp_path}/ttyB", f"--robot.cameras=top:{tmp_path}/none.mp4",
         f"--record.root={tmp_path}/ds"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "main.py: SO-101 setup check failed:"
    assert any("leader arm: cannot open serial port" in line and f"{tmp_path}/ttyA" in line for line in lines)
    assert any("follower arm" in line and f"{tmp_path}/ttyB" in line for line in lines)
    assert any(line.strip().startswith("camera top:") and "none.mp4" in line for line in lines)
    assert not (tmp_path / "ds").exists()
