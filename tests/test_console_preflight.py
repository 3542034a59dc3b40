"""The dataset location is checked before dora starts: one line, exit 2, about a second, nothing left behind."""

import json
import os
import subprocess
import sys
import time

import pytest

from e2e_helpers import REPO

from operating_platform.core.config import parse_config
from operating_platform.core.preflight import LocationError, check_dataset_location, free_default_name
from operating_platform.dataset import LeRobotDataset, build_features
from operating_platform.hardware.base import SO101_JOINT_NAMES

MAIN = REPO / "operating_platform" / "core" / "main.py"


def make_dataset(root, fps=30, joints=SO101_JOINT_NAMES, cameras=None, robot_type="so101"):
    cameras = {"top": (480, 640), "wrist": (480, 640)} if cameras is None else cameras
    LeRobotDataset.create("x", root=root, fps=fps, robot_type=robot_type, use_async_saver=False,
                          features=build_features(list(joints), cameras)).close()


def check(tmp_path, *flags):
    return check_dataset_location(parse_config([f"--record.root={tmp_path / 'ds'}", *flags]))


def test_a_new_nested_root_passes_and_nothing_is_created(tmp_path):
    assert check_dataset_location(parse_config([f"--record.root={tmp_path / 'a' / 'b' / 'ds'}"])) == tmp_path / "a" / "b" / "ds"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("root, message", [
    ("/proc/x", "--record.root=/proc/x: not writable"),
    ("/dev/null/ds", "--record.root=/dev/null/ds: cannot be created, /dev/null is not a folder"),
])
def test_unusable_roots_are_named(root, message):
    with pytest.raises(LocationError) as err:
        check_dataset_location(parse_config([f"--record.root={root}"]))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_read_only_folder_is_refused(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(LocationError, match="not writable"):
            check(tmp_path)
    finally:
        tmp_path.chmod(0o700)


def test_existing_dataset_needs_resume_and_a_non_dataset_folder_is_refused(tmp_path):
    make_dataset(tmp_path / "ds")
    with pytest.raises(LocationError, match="already holds a dataset; add --record.resume"):
        check(tmp_path)
    check(tmp_path, "--record.resume")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(LocationError, match="is not empty and is not a dataset"):
        check_dataset_location(parse_config([f"--record.root={tmp_path / 'other'}"]))
    (tmp_path / "file").write_text("")
    with pytest.raises(LocationError, match="exists and is not a folder"):
        check_dataset_location(parse_config([f"--record.root={tmp_path / 'file'}"]))


@pytest.mark.parametrize("dataset, flags, message", [
    (dict(fps=15), [], "fps differs (dataset 15, requested 30)"),
    (dict(robot_type="koch"), [], "robot_type differs"),
    (dict(joints=["a", "b"]), [], "feature 'action' differs"),
    (dict(cameras={"top": (480, 640)}), [], "cameras differ (dataset ['observation.images.top']"),
    (dict(), ["--robot.camera_width=320", "--robot.camera_height=240"], "'observation.images.top' differs"),
])
def test_resume_into_an_incompatible_dataset_names_the_mismatch(tmp_path, dataset, flags, message):
    make_dataset(tmp_path / "ds", **dataset)
    with pytest.raises(LocationError) as err:
        check(tmp_path, "--record.resume", *flags)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("setup, flags", [
    (lambda tmp: None, ["--record.root=/proc/x"]),
    (lambda tmp: None, ["--record.root=/dev/null/ds"]),
    (lambda tmp: make_dataset(tmp / "ds", fps=15), ["--record.resume"]),
])
def test_console_stops_before_dora_in_about_a_second(tmp_path, setup, flags):
    setup(tmp_path)
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(MAIN), f"--record.root={tmp_path / 'ds'}", *flags], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "TMPDIR": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")})
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("main.py: error: --record.root="), result.stderr
    assert "recording into" not in result.stdout
    assert elapsed < 45, f"{elapsed:.1f} s"  # ~0.3 s idle; dora alone takes longer even to start its coordinator
    assert not list(tmp_path.glob("op-record-*")) and not (tmp_path / "state").exists(), "no run folder left behind"
    if (tmp_path / "ds" / "meta").exists():
        assert json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())["total_episodes"] == 0


def test_an_unnamed_recording_after_the_quick_start_goes_to_the_next_free_name():
    """`main.py --record.use_async_save` after `dora run dataflow.yml` made data/sim_demo: works as typed."""
    from pathlib import Path

    make_dataset(Path("data/sim_demo"))
    cfg = parse_config(["--record.use_async_save"])
    note = free_default_name(cfg, ["--record.use_async_save"])
    assert cfg.record.dataset_root == Path("data/sim_demo_2") and "recording into data/sim_demo_2" in note
    check_dataset_location(cfg)
    named = parse_config(["--record.repo_id=sim_demo"])
    assert free_default_name(named, ["--record.repo_id=sim_demo"]) is None  # a named dataset is never switched
    with pytest.raises(LocationError, match="already holds a dataset"):
        check_dataset_location(named)


def test_a_disk_too_small_for_a_few_episodes_is_refused_before_dora(tmp_path):
    """A real 20 MB tmpfs: two 640x480 cameras for 4 s episodes need more (raw spool + video), so no recording starts."""
    from storage_faults import tmpfs

    with tmpfs(tmp_path / "disk", "20m") as disk:
        with pytest.raises(LocationError) as err:
            check_dataset_location(parse_config([f"--record.root={disk / 'ds'}"]))
        assert "not enough free space at" in str(err.value) and "needed for 3 episodes" in str(err.value)
        assert "\n" not in str(err.value) and list(disk.iterdir()) == []
        check_dataset_location(parse_config([f"--record.root={disk / 'ds'}", "--robot.camera_width=64",
                                             "--robot.camera_height=48", "--record.episode_time_s=1"]))
