"""Reading recorded LeRobot v2.1 datasets as training samples."""

import json
import shutil

import numpy as np
import pytest
from training_fixtures import recorded_dataset

from operating_platform.dataset.format import DatasetFormatError, data_relpath
from operating_platform.dataset.video import decode_video_frames
from operating_platform.training.loader import create_data_loader
from operating_platform.training.reader import ACTION_PAD_KEY, LeRobotReader
from operating_platform.training.video_frames import VideoFrameError


@pytest.fixture(scope="module")
def reader(sim_dataset_root):
    r = LeRobotReader(sim_dataset_root, action_horizon=6)
    yield r
    r.close()


@pytest.fixture(scope="session")
def sim_dataset_root(tmp_path_factory):
    return recorded_dataset(tmp_path_factory)


def test_sample_structure(reader):
    s = reader[5]
    assert s["observation.state"].shape == (1, 6) and s["observation.state"].dtype == np.float32
    assert s["action"].shape == (6, 6) and s[ACTION_PAD_KEY].shape == (6,)
    assert s["observation.images.top"].shape == (48, 64, 3) and s["observation.images.top"].dtype == np.uint8
    assert s["task"] == "pick up the cube" and int(s["episode_index"]) == 0 and int(s["frame_index"]) == 5
    assert len(reader) == 72


def test_action_chunk_is_future_actions_padded_at_episode_end(reader):
    last = 23  # last frame of episode 0
    chunk = reader[last - 2]
    assert chunk[ACTION_PAD_KEY].tolist() == [False, False, False, True, True, True]
    actions = np.stack([reader[i]["action"][0] for i in range(last - 2, last + 1)])
    assert np.array_equal(chunk["action"][:3], actions)
    assert np.array_equal(chunk["action"][3:], np.repeat(actions[-1:], 3, axis=0))  # repeat, never the next episode
    assert not reader[last + 1][ACTION_PAD_KEY].any() and int(reader[last + 1]["episode_index"]) == 1


def test_frames_match_full_decode_in_random_order(reader):
    reference = {}
    for row in np.random.default_rng(0).permutation(len(reader))[:30]:
        s = reader[int(row)]
        for cam in reader.camera_keys:
            path = reader.video_path(cam, int(row))
            frames = reference.setdefault(path, decode_video_frames(path))
            assert np.array_equal(s[cam], frames[int(s["frame_index"])]), (row, cam)


def test_float_images_and_camera_subset(sim_dataset_root, reader):
    r = LeRobotReader(sim_dataset_root, action_horizon=2, image_dtype="float32", camera_keys=["observation.images.wrist"])
    s = r[10]
    assert "observation.images.top" not in s
    img = s["observation.images.wrist"]
    assert img.dtype == np.float32 and 0.0 <= img.min() and img.max() <= 1.0
    assert np.array_equal(np.round(img * 255).astype(np.uint8), reader[10]["observation.images.wrist"])
    with pytest.raises(ValueError, match="observation.images.side"):
        LeRobotReader(sim_dataset_root, camera_keys=["observation.images.side"])


def test_loader_batches_have_reference_shapes(reader):
    batch = next(iter(create_data_loader(reader, 4, seed=0)))
    assert batch["observation.state"].shape == (4, 1, 6)
    assert batch["action"].shape == (4, 6, 6)
    assert batch["observation.images.top"].shape == (4, 48, 64, 3)
    assert len(batch["task"]) == 4


def test_fingerprint_identifies_data_not_location(sim_dataset_root, tmp_path, reader):
    moved = tmp_path / "moved"
    shutil.copytree(sim_dataset_root, moved)
    assert LeRobotReader(moved, action_horizon=6).fingerprint() == reader.fingerprint()
    assert LeRobotReader(moved, action_horizon=7).fingerprint() != reader.fingerprint()


def _copy(src, tmp_path):
    dst = tmp_path / "ds"
    shutil.copytree(src, dst)
    return dst


def test_missing_parquet_is_named(sim_dataset_root, tmp_path):
    root = _copy(sim_dataset_root, tmp_path)
    (root / data_relpath(1)).unlink()
    with pytest.raises(DatasetFormatError, match="episode_000001.parquet"):
        LeRobotReader(root)


def test_episode_length_mismatch_is_named(sim_dataset_root, tmp_path):
    root = _copy(sim_dataset_root, tmp_path)
    path = root / "meta/episodes.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[2]["length"] += 1
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetFormatError, match="episode 2 has length 25"):
        LeRobotReader(root)


def test_frame_outside_tolerance_is_reported(sim_dataset_root, tmp_path):
    root = _copy(sim_dataset_root, tmp_path)
    r = LeRobotReader(root)
    r._timestamps[3] += 0.5 / r.fps  # between two frames
    with pytest.raises(VideoFrameError, match=r"no frame within 0.0001s of t=0.11666"):
        r[3]
    r._timestamps[4] = 100.0  # past the end of the video
    with pytest.raises(VideoFrameError, match="t=100.000000"):
        r[4]
    assert r[5]["frame_index"] == 5  # the decoder recovers


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetFormatError, match="info.json"):
        LeRobotReader(tmp_path)


def test_reads_av1_videos_as_lerobot_writes_them(tmp_path_factory):
    root = recorded_dataset(tmp_path_factory, "training_av1_ds", num_episodes=2, frames_per_episode=20, vcodec="libsvtav1")
    r = LeRobotReader(root, action_horizon=4)
    for row in np.random.default_rng(1).permutation(len(r))[:15]:
        s = r[int(row)]
        frames = decode_video_frames(r.video_path("observation.images.top", int(row)))
        assert np.array_equal(s["observation.images.top"], frames[int(s["frame_index"])])


def test_v30_dataset_reads_as_the_same_samples(sim_dataset_root, reader, tmp_path_factory):
    """The same simulated recording written as LeRobot v3.0 (shared files, segments) gives the
    same samples; each camera frame is the one at its segment offset in the shared mp4."""
    v30_root = recorded_dataset(tmp_path_factory, name="training_sim_ds_v30", codebase_version="v3.0")
    r = LeRobotReader(v30_root, action_horizon=6)
    try:
        assert r.is_v30 and len(r) == len(reader) and r.tasks == reader.tasks
        decoded = {}
        for row in range(len(r)):
            ours, ref = r[row], reader[row]
            for key in ("observation.state", "action", ACTION_PAD_KEY, "index", "episode_index", "frame_index", "task"):
                assert np.array_equal(ours[key], ref[key]), (row, key)
            for cam in r.camera_keys:
                path = r.video_path(cam, row)
                assert path.name == "file-000.mp4"
                frames = decoded.setdefault(path, decode_video_frames(path))
                assert np.array_equal(ours[cam], frames[row]), (row, cam)  # one shared file: frame `row` of it
    finally:
        r.close()
