"""Datasets our writer records as LeRobot v3.0 load unconverted in LeRobot 0.4.x's own reader.

The same recording as test_lerobot_compat.py (async saver, a discarded take, a resumed
session), written natively as v3.0; LeRobot 0.4.x's `LeRobotDataset` reads it in a child
process (it needs datasets>=4, the v2.1 reader here datasets<=3.6). Nothing of ours reads
back: every value is checked against what was handed to `add_frame`.
LeRobot 0.5+ needs Python >= 3.12; where that is missing its test is skipped, saying so.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("lerobot")

import lerobot_env  # noqa: E402
from crash_child import KILL_POINTS, PACK_KILL_POINTS  # noqa: E402
from dataset_factory import make_frame  # noqa: E402
from operating_platform.dataset import LeRobotDataset as OurDataset  # noqa: E402
from test_lerobot_compat import (  # noqa: E402  (the recording and its checks, shared with the v2.1 tests)
    CAMERAS, EPISODE_LENGTHS, EPISODE_STARTS, EPISODE_TASKS, FPS, TASKS, TOTAL_FRAMES, VIDEO_KEYS,
    MAX_DECODE_MAE, action, assert_frame_is, camera_image, locate, record, state,
)

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("lerobot_v30_read.py")
DELTA = {
    "action": [k / FPS for k in range(10)],
    "observation.state": [-2 / FPS, -1 / FPS, 0.0],
    "observation.images.wrist": [-1 / FPS, 0.0],
}
DELTA_ITEMS = [0, 1, 29, 30, 70, 74, 75, 150, TOTAL_FRAMES - 1]
# libsvtav1 with LeRobot's default file sizes: the resumed session's pack extends the shared files.
# libx264 with tiny ones: every episode opens new files, two per chunk directory.
VARIANTS = {"libsvtav1": {}, "libx264": {"data_files_size_in_mb": 0.001, "video_files_size_in_mb": 0.001}}


class Loaded:
    def __init__(self, root: Path, vcodec: str, npz):
        self.root, self.vcodec = root, vcodec
        self.npz = {k: npz[k] for k in npz.files}  # an NpzFile re-reads an array on every access
        self.meta = json.loads(str(self.npz["meta"]))

    def items(self, prefix: str) -> list[dict]:
        arrays = {k[len(prefix):]: v for k, v in self.npz.items() if k.startswith(prefix)}
        rows = len(next(iter(arrays.values())))
        return [{k: v[r] for k, v in arrays.items()} for r in range(rows)]


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def loaded(request, tmp_path_factory) -> Loaded:
    if not lerobot_env.V30_PATH.is_dir():
        pytest.skip(f"no lerobot 0.4.x at {lerobot_env.V30_PATH}: run scripts/install_lerobot_for_tests.sh")
    vcodec = request.param
    tmp = tmp_path_factory.mktemp(f"lerobot_v30_{vcodec}")
    root = tmp / "ours"
    record(root, "local/ours", vcodec, codebase_version="v3.0", **VARIANTS[vcodec])
    stats_episodes = []
    for ep, length in enumerate(EPISODE_LENGTHS):
        images = {}
        for cam in CAMERAS:
            from PIL import Image

            paths = []
            for i in range(length):
                path = tmp / f"{cam}_{ep}_{i}.png"
                Image.fromarray(camera_image(ep, i, cam)).save(path)
                paths.append(str(path))
            images[f"observation.images.{cam}"] = paths
        stats_episodes.append({"start": EPISODE_STARTS[ep], "length": length, "images": images})
    spec = {"items": list(range(TOTAL_FRAMES)), "delta_timestamps": DELTA, "delta_items": DELTA_ITEMS,
            "episodes_subset": [2], "stats_episodes": stats_episodes}
    (tmp / "spec.json").write_text(json.dumps(spec))
    out = tmp / "read.npz"
    result = subprocess.run([sys.executable, str(CHILD), str(root), str(out), str(tmp / "spec.json")],
                            env=lerobot_env.converter_env(tmp / "hf_home"), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"LeRobot 0.4 could not read it:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return Loaded(root, vcodec, np.load(out))


def test_metadata_and_episode_boundaries(loaded):
    meta = loaded.meta
    info = meta["info"]
    assert info["codebase_version"] == "v3.0" and not (loaded.root / "meta/episodes.jsonl").exists()
    assert (meta["num_episodes"], meta["num_frames"], meta["len"]) == (3, TOTAL_FRAMES, TOTAL_FRAMES)
    assert info["fps"] == FPS and info["robot_type"] == "so101"
    assert meta["video_keys"] == VIDEO_KEYS == meta["camera_keys"]
    for key, (h, w) in zip(VIDEO_KEYS, CAMERAS.values()):
        assert tuple(info["features"][key]["shape"]) == (h, w, 3)
        assert info["features"][key]["info"]["video.codec"] == {"libsvtav1": "av1", "libx264": "h264"}[loaded.vcodec]
    episodes = meta["episodes"]
    assert [e["episode_index"] for e in episodes] == [0, 1, 2]
    assert [e["dataset_from_index"] for e in episodes] == EPISODE_STARTS
    assert [e["dataset_to_index"] for e in episodes] == [s + n for s, n in zip(EPISODE_STARTS, EPISODE_LENGTHS)]
    for ep, tasks in enumerate(EPISODE_TASKS):
        assert episodes[ep]["length"] == len(tasks)
        assert sorted(episodes[ep]["tasks"]) == sorted(set(tasks))
    assert meta["tasks"] == {str(i): t for i, t in enumerate(TASKS)} or meta["tasks"] == dict(enumerate(TASKS))
    files = {(e["data/chunk_index"], e["data/file_index"]) for e in episodes}
    if loaded.vcodec == "libx264":  # tiny files: one per episode, chunk-001 reached
        assert files == {(0, 0), (0, 1), (1, 0)}
        for key in VIDEO_KEYS:
            assert [e[f"videos/{key}/from_timestamp"] for e in episodes] == [0.0, 0.0, 0.0]
    else:  # one shared file each, extended by the resumed session's pack
        assert files == {(0, 0)}
        for key in VIDEO_KEYS:
            assert [e[f"videos/{key}/from_timestamp"] for e in episodes] == pytest.approx([s / FPS for s in EPISODE_STARTS])
            assert [e[f"videos/{key}/to_timestamp"] for e in episodes] == pytest.approx(
                [(s + n) / FPS for s, n in zip(EPISODE_STARTS, EPISODE_LENGTHS)])
    hidden = sorted(p.name for p in loaded.root.iterdir() if p.name.startswith("."))
    assert hidden == [".episodes"] and not list((loaded.root / ".episodes").rglob("*.mp4"))


def test_every_frame_reads_back_as_recorded(loaded):
    cols = {k[len("col/"):]: v for k, v in loaded.npz.items() if k.startswith("col/")}
    for index in range(TOTAL_FRAMES):
        episode, i = locate(index)
        where = f"row {index} (episode {episode}, frame {i})"
        np.testing.assert_array_equal(cols["observation.state"][index], state(episode, i), err_msg=where)
        np.testing.assert_array_equal(cols["action"][index], action(episode, i), err_msg=where)
        assert (cols["index"][index], cols["episode_index"][index], cols["frame_index"][index]) == (index, episode, i), where
        assert float(cols["timestamp"][index]) == pytest.approx(i / FPS, abs=1e-6), where
        assert cols["task_index"][index] == TASKS.index(EPISODE_TASKS[episode][i]), where
    for index, item in enumerate(loaded.items("item/")):
        episode, i = locate(index)
        where = f"item {index} (episode {episode}, frame {i})"
        np.testing.assert_array_equal(item["observation.state"], state(episode, i), err_msg=where)
        assert (int(item["index"]), int(item["episode_index"]), int(item["frame_index"])) == (index, episode, i), where
        assert str(item["task"]) == EPISODE_TASKS[episode][i], where
        for cam in CAMERAS:
            assert tuple(item[f"observation.images.{cam}"].shape) == (3, *CAMERAS[cam]), where
            assert_frame_is(item[f"observation.images.{cam}"], episode, i, cam, where)


def test_delta_timestamps_give_action_chunks_padded_at_episode_ends(loaded):
    for index, item in zip(DELTA_ITEMS, loaded.items("delta/")):
        episode, i = locate(index)
        last = EPISODE_LENGTHS[episode] - 1
        where = f"item {index} (episode {episode}, frame {i})"
        future = [i + k for k in range(10)]
        np.testing.assert_array_equal(item["action"], [action(episode, min(j, last)) for j in future], err_msg=where)
        assert item["action_is_pad"].tolist() == [j > last for j in future], where
        past = [i - 2, i - 1, i]
        np.testing.assert_array_equal(item["observation.state"], [state(episode, max(j, 0)) for j in past], err_msg=where)
        assert item["observation.state_is_pad"].tolist() == [j < 0 for j in past], where
        wrist = item["observation.images.wrist"]
        assert wrist.shape == (2, 3, *CAMERAS["wrist"]), where
        assert_frame_is(wrist[0], episode, max(i - 1, 0), "wrist", where + " previous")
        assert_frame_is(wrist[1], episode, i, "wrist", where)
        assert item["observation.images.wrist_is_pad"].tolist() == [i == 0, False], where


def test_one_episode_selected_from_another_file(loaded):
    subset = loaded.meta["subset"]
    assert subset["len"] == EPISODE_LENGTHS[2]
    assert (subset["first"]["index"], subset["first"]["frame_index"]) == (EPISODE_STARTS[2], 0)
    assert (subset["last"]["index"], subset["last"]["episode_index"]) == (TOTAL_FRAMES - 1, 2)
    np.testing.assert_array_equal(subset["last"]["observation.state"], state(2, EPISODE_LENGTHS[2] - 1))


STATS = ("min", "max", "mean", "std", "count")  # LeRobot 0.4 adds approximate quantiles; see README


def test_stats_are_what_lerobot_computes(loaded):
    ours = pq.ParquetDataset(sorted(str(p) for p in (loaded.root / "meta/episodes").glob("*/*.parquet"))).read().to_pylist()
    for ep, expected in enumerate(loaded.meta["lerobot_episode_stats"]):
        for key, by_stat in expected.items():
            for stat in STATS:
                got = ours[ep][f"stats/{key}/{stat}"]
                assert np.shape(got) == np.shape(by_stat[stat]), f"episode {ep} {key}.{stat} shape"
                np.testing.assert_allclose(got, by_stat[stat], rtol=1e-6, atol=1e-7, err_msg=f"episode {ep} {key}.{stat}")
    stats = loaded.meta["stats"]  # meta/stats.json as LeRobot loads it
    for key, by_stat in loaded.meta["lerobot_aggregate_stats"].items():
        for stat in STATS:
            np.testing.assert_allclose(stats[key][stat], by_stat[stat], rtol=1e-6, atol=1e-7, err_msg=f"{key}.{stat}")


def test_newest_lerobot():
    if sys.version_info < (3, 12):
        pytest.skip(f"LeRobot 0.5+ needs Python >= 3.12; this is {sys.version.split()[0]}: tested against LeRobot 0.4.x only")
    pytest.skip("no LeRobot 0.5+ installed for the tests (scripts/install_lerobot_for_tests.sh installs 0.3.x and 0.4.x)")


@pytest.mark.parametrize("point", KILL_POINTS + PACK_KILL_POINTS)
def test_loads_after_a_crash_once_reopened(point, tmp_path):
    """SIGKILL at each step of a commit or of a pack (tests/crash_child.py, v3.0), one open of
    ours, then LeRobot 0.4's reader: every handed-over episode is there, every frame as recorded."""
    if not lerobot_env.V30_PATH.is_dir():
        pytest.skip(f"no lerobot 0.4.x at {lerobot_env.V30_PATH}")
    root = tmp_path / "ds"
    child = Path(__file__).with_name("crash_child.py")
    proc = subprocess.run([sys.executable, str(child), str(root), point, "async", "v3.0"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == -signal.SIGKILL, f"child was not SIGKILLed: {proc.returncode}\n{proc.stderr[-3000:]}"
    OurDataset.open(root, use_async_saver=False, vcodec="libx264").close()
    saved = 1 if point == "mid_recording" else 2
    frames_per_episode = 20  # crash_child's
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"items": list(range(saved * frames_per_episode))}))
    out = tmp_path / "read.npz"
    result = subprocess.run([sys.executable, str(CHILD), str(root), str(out), str(spec)],
                            env=lerobot_env.converter_env(tmp_path / "hf"), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{point}: LeRobot 0.4 could not read it:\n{result.stderr[-5000:]}"
    got = dict(np.load(out))
    meta = json.loads(str(got["meta"]))
    assert (meta["num_episodes"], meta["len"]) == (saved, saved * frames_per_episode), point
    for index in range(saved * frames_per_episode):
        episode, i = divmod(index, frames_per_episode)
        recorded = make_frame(episode, i)
        for key in ("observation.state", "action"):
            np.testing.assert_array_equal(got[f"col/{key}"][index], recorded[key], err_msg=f"{point}: row {index} {key}")
        for key in [k for k in recorded if k.startswith("observation.images.")]:
            img = np.transpose(got[f"item/{key}"][index], (1, 2, 0)) * 255.0
            assert np.abs(img - recorded[key]).mean() < 3 * MAX_DECODE_MAE, f"{point}: item {index} {key}"
