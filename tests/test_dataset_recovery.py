"""dataset/recovery.py on its own: a real v2.1 dataset with what a killed commit leaves behind is rolled
back to its info.json, and repeated or missing metadata rows are repaired from the episode files."""

import json
import shutil

import numpy as np
import pytest
from dataset_factory import write_dataset

from operating_platform.dataset import format as fmt
from operating_platform.dataset.info import DatasetInfo
from operating_platform.dataset.recovery import remove_uncommitted_episode_files, repair_dataset
from operating_platform.dataset.validate import validate_dataset


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("pristine") / "ds", lengths=(20, 25))


@pytest.fixture
def root(pristine, tmp_path):
    return shutil.copytree(pristine, tmp_path / "ds")


def info(root):
    return DatasetInfo.load(root)


def test_a_clean_dataset_needs_no_repair(root):
    assert repair_dataset(root, info(root)) == []


def test_what_a_killed_commit_left_past_info_json_is_removed(root):
    (root / fmt.STAGING_DIR).mkdir()
    (root / fmt.STAGING_DIR / "episode_000002.parquet").write_bytes(b"half")
    (root / "meta" / ("episodes.jsonl" + fmt.TEMP_SUFFIX)).write_text("{")
    moved_in = root / fmt.data_relpath(2)
    shutil.copy(root / fmt.data_relpath(1), moved_in)  # renamed in, never counted in info.json
    video_key = info(root).video_keys[0]
    shutil.copy(root / fmt.video_relpath(video_key, 1), root / fmt.video_relpath(video_key, 2))
    with open(root / fmt.EPISODES_PATH, "a") as f:  # a row written before info.json
        f.write(json.dumps({"episode_index": 2, "tasks": ["pick the cube"], "length": 25}) + "\n")
    spooled = root / fmt.SPOOL_DIR / "0001" / ("x" + fmt.TEMP_SUFFIX)
    spooled.parent.mkdir(parents=True)
    spooled.write_text("kept")

    actions = repair_dataset(root, info(root))

    assert any("unfinished files" in a for a in actions) and any("temp file" in a for a in actions)
    assert any(str(moved_in) in a for a in actions) and any("trimmed" in a and "episodes.jsonl" in a for a in actions)
    assert not (root / fmt.STAGING_DIR).exists() and not moved_in.exists()
    assert not (root / fmt.video_relpath(video_key, 2)).exists()
    assert [r["episode_index"] for r in fmt.read_jsonl(root / fmt.EPISODES_PATH)] == [0, 1]
    assert spooled.read_text() == "kept"  # the spool is the writer's to commit again
    report = validate_dataset(root)
    assert report.passed, [c for c in report.failed]


def test_a_repeated_row_keeps_the_one_matching_the_parquet(root):
    rows = fmt.read_jsonl(root / fmt.EPISODES_PATH)
    fmt.write_jsonl_atomic(root / fmt.EPISODES_PATH, [rows[0], {**rows[1], "length": 99}, rows[1]])
    actions = repair_dataset(root, info(root))
    assert actions == [f"{fmt.EPISODES_PATH}: kept one row of each repeated episode 1"]
    assert fmt.read_jsonl(root / fmt.EPISODES_PATH) == rows


def test_missing_rows_are_rebuilt_from_the_episode_files(root):
    episodes, stats = fmt.read_jsonl(root / fmt.EPISODES_PATH), fmt.read_jsonl(root / fmt.EPISODES_STATS_PATH)
    fmt.write_jsonl_atomic(root / fmt.EPISODES_PATH, episodes[1:])
    fmt.write_jsonl_atomic(root / fmt.EPISODES_STATS_PATH, stats[:1])
    actions = repair_dataset(root, info(root))
    assert f"{fmt.EPISODES_PATH}: rebuilt the missing row(s) of episode 0 from its files" in actions
    assert f"{fmt.EPISODES_STATS_PATH}: rebuilt the missing row(s) of episode 1 from its files" in actions
    assert fmt.read_jsonl(root / fmt.EPISODES_PATH) == episodes
    rebuilt = fmt.read_jsonl(root / fmt.EPISODES_STATS_PATH)[1]["stats"]
    original = stats[1]["stats"]
    assert rebuilt.keys() == original.keys()
    for name, value in original["observation.state"].items():
        assert rebuilt["observation.state"][name] == pytest.approx(value), name
    video_key = info(root).video_keys[0]
    # image stats come from the decoded video, the original from the raw frames: lossy, but close
    for name in ("mean", "std"):
        assert np.ravel(rebuilt[video_key][name]) == pytest.approx(np.ravel(original[video_key][name]), abs=0.02)
    assert validate_dataset(root).passed


def test_a_row_without_files_is_named_not_invented(root):
    (root / fmt.data_relpath(1)).unlink()
    fmt.write_jsonl_atomic(root / fmt.EPISODES_PATH, fmt.read_jsonl(root / fmt.EPISODES_PATH)[:1])
    actions = repair_dataset(root, info(root))
    assert any("episode(s) 1 have no row and no parquet" in a for a in actions)
    assert len(fmt.read_jsonl(root / fmt.EPISODES_PATH)) == 1


def test_only_episode_files_at_or_past_the_commit_point_are_removed(root):
    removed = remove_uncommitted_episode_files(root, committed=1)
    assert sorted(p.name for p in removed) == ["episode_000001.mp4"] * 2 + ["episode_000001.parquet"]
    assert (root / fmt.data_relpath(0)).exists()
