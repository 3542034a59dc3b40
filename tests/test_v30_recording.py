"""Recording LeRobot v3.0 with our writer: what holds for v2.1 holds here (resume refusing
mismatches, indices and tasks continuing), plus packing on demand and appending to v3.0
datasets our writer did not record (converted ones)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from dataset_factory import committed_episodes, committed_states, create, expected_states_for, features, record_episode
from e2e_helpers import REPO, assert_valid

from operating_platform.dataset import DatasetFormatError, LeRobotDataset


def test_resume_refuses_mismatches_and_the_other_format(tmp_path):
    root = tmp_path / "ds"
    ds = create(root, codebase_version="v3.0")
    record_episode(ds, 0, 5)
    ds.save_episode()
    ds.close()
    with pytest.raises(DatasetFormatError, match="fps differs"):
        LeRobotDataset.open(root, fps=15, vcodec="libx264")
    with pytest.raises(DatasetFormatError, match="it is a LeRobot v3.0 dataset, v2.1 was requested"):
        LeRobotDataset.open(root, codebase_version="v2.1", vcodec="libx264")
    with pytest.raises(DatasetFormatError, match="not a supported LeRobot format"):
        create(tmp_path / "other", codebase_version="v3.1")


def test_pack_on_demand_while_recording_and_resume_continues(tmp_path):
    root = tmp_path / "ds"
    ds = create(root, codebase_version="v3.0", use_async_saver=True)
    for ep in range(2):
        record_episode(ds, ep, 6 + ep, task=f"task {ep % 2}")
        ds.save_episode()
    ds.wait_for_save_completion()
    assert ds.pack().episodes == 2 and json.loads((root / "meta/info.json").read_text())["total_episodes"] == 2
    record_episode(ds, 2, 9, task="task 0")
    ds.save_episode()
    ds.close()
    assert ds.last_pack.episodes == 1
    ds = LeRobotDataset.open(root, vcodec="libx264", features=features(), fps=30, robot_type="so101")
    record_episode(ds, 3, 4, task="task 2")
    assert ds.save_episode() == 3
    ds.close()
    info = assert_valid(root)
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (4, 6 + 7 + 9 + 4, 3)
    assert [e["tasks"] for e in committed_episodes(root)] == [["task 0"], ["task 1"], ["task 0"], ["task 2"]]
    for ep, n in enumerate((6, 7, 9, 4)):
        np.testing.assert_array_equal(committed_states(root, ep), expected_states_for(ep, n))
    assert not (root / ".episodes" / "data").exists() or not list((root / ".episodes" / "data").rglob("*.parquet"))


def test_appending_to_a_converted_dataset(tmp_path):
    """A v3.0 dataset with no store (here: converted from v2.1) gets one seeded from its metadata."""
    from dataset_factory import write_dataset

    src = write_dataset(tmp_path / "v21", lengths=(5, 6))
    dst = tmp_path / "v30"
    result = subprocess.run([sys.executable, str(REPO / "scripts/convert_dataset.py"), "--to", "v3.0", str(src), str(dst)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    ds = LeRobotDataset.open(dst, vcodec="libx264")
    record_episode(ds, 2, 7, task="pick the cube")
    assert ds.save_episode() == 2
    ds.close()
    info = assert_valid(dst)
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 18, 2)
    np.testing.assert_array_equal(committed_states(dst, 2), expected_states_for(2, 7))


@pytest.mark.slow
def test_pack_script_finishes_what_a_killed_recorder_left(tmp_path):
    root = tmp_path / "ds"
    child = subprocess.run([sys.executable, str(REPO / "tests/crash_child.py"), str(root), "mid_pack_video", "async", "v3.0"],
                           capture_output=True, text=True, timeout=180)
    assert child.returncode == -9 and "EPISODE1_COMMITTED" in child.stdout, child.stderr[-3000:]
    assert json.loads((root / "meta/info.json").read_text())["total_episodes"] == 1  # episode 1 committed, not packed
    result = subprocess.run([sys.executable, str(REPO / "scripts/pack_dataset.py"), str(root)],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0 and "packed 1 episode(s)" in result.stdout, result.stdout + result.stderr
    assert assert_valid(root)["total_episodes"] == 2
    np.testing.assert_array_equal(committed_states(root, 1), expected_states_for(1, 20))
