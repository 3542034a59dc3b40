"""Datasets our writer records load unchanged in LeRobot's own reader and converter.

The users' test of this project: `LeRobotDataset(repo_id, root=...)` from lerobot 0.3.x
(the last release with the v2.1 format) must read what we record, frame for frame, and
lerobot 0.4.x's `convert_dataset_v21_to_v30` must convert it. Nothing of ours is used to
read back: every value is checked against what was handed to `add_frame`.
Runs only where scripts/install_lerobot_for_tests.sh installed LeRobot.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("lerobot")

import lerobot_env  # noqa: E402  (after the skip: only meaningful with LeRobot installed)
from dataset_factory import make_frame  # noqa: E402
from crash_child import KILL_POINTS  # noqa: E402
from operating_platform.dataset import LeRobotDataset as OurDataset  # noqa: E402
from operating_platform.dataset import build_features  # noqa: E402
from operating_platform.dataset.format import DEFAULT_FEATURES  # noqa: E402
from operating_platform.dataset.scheduling import no_real_time_promotion  # noqa: E402
from operating_platform.hardware.base import SO101_JOINT_NAMES  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    # lerobot 0.3.x's "pyav" backend is torchvision's VideoReader, deprecated since torchvision 0.22
    pytest.mark.filterwarnings("ignore:The video decoding and encoding capabilities of torchvision are deprecated"),
]

FPS = 30
CHUNKS_SIZE = 2  # three episodes span two chunk directories
CAMERAS = {"top": (480, 640), "wrist": (96, 128)}
VIDEO_KEYS = [f"observation.images.{cam}" for cam in CAMERAS]
# Per episode, the task of every frame. Episodes 0-1 are recorded in one session,
# episode 2 after resuming the dataset (our LeRobotDataset.open); 120 frames > the
# 100 that image statistics sample.
EPISODE_TASKS = [
    ["pick up the cube"] * 30,
    ["pick up the cube"] * 20 + ["place it in the bowl"] * 25,
    ["push the block"] * 120,
]
EPISODE_LENGTHS = [len(tasks) for tasks in EPISODE_TASKS]
TASKS = list(dict.fromkeys(task for tasks in EPISODE_TASKS for task in tasks))  # task_index: order of first use
EPISODE_STARTS = np.cumsum([0] + EPISODE_LENGTHS[:-1]).tolist()
TOTAL_FRAMES = sum(EPISODE_LENGTHS)
# Mean absolute error (0-255 scale) a decoded frame may have against the frame recorded;
# a frame off by one in time, or with swapped channels, is far beyond it.
MAX_DECODE_MAE = 4.0


# --------------------------------------------------------------------------- what is recorded


def state(episode: int, i: int) -> np.ndarray:
    return (np.arange(6) * 10.0 + episode * 1000 + i * 0.25).astype(np.float32)


def action(episode: int, i: int) -> np.ndarray:
    return state(episode, i) + np.float32(0.5)


def camera_image(episode: int, i: int, cam: str) -> np.ndarray:
    """Red ramps left to right, green top to bottom, blue tells the episode; a white
    square moves a third of its size per frame, so neighbouring frames differ clearly."""
    h, w = CAMERAS[cam]
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = 40 + 120 * xx // w
    img[..., 1] = 40 + 120 * yy // h
    img[..., 2] = 60 + 50 * (episode % 4)
    size = h // 3
    x0 = (i * size // 3) % (w - size)
    img[h // 3 : h // 3 + size, x0 : x0 + size] = 250
    return img


def frame(episode: int, i: int) -> dict:
    images = {f"observation.images.{cam}": camera_image(episode, i, cam) for cam in CAMERAS}
    return {"observation.state": state(episode, i), "action": action(episode, i), **images}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def locate(index: int) -> tuple[int, int]:
    """(episode, frame_index) of a global frame index."""
    episode = int(np.searchsorted(EPISODE_STARTS, index, side="right")) - 1
    return episode, index - EPISODE_STARTS[episode]


def record_episode(ds: OurDataset, episode: int) -> None:
    for i, task in enumerate(EPISODE_TASKS[episode]):
        ds.add_frame(frame(episode, i), task=task)
    ds.save_episode()


def record(root: Path, repo_id: str, vcodec: str, codebase_version: str = "v2.1", **options) -> None:
    """As the console records: async saver, a discarded take, then a resumed session."""
    features = build_features(SO101_JOINT_NAMES, CAMERAS)
    ds = OurDataset.create(repo_id, root=root, fps=FPS, features=features, robot_type="so101",
                           vcodec=vcodec, chunks_size=CHUNKS_SIZE, use_async_saver=True,
                           codebase_version=codebase_version, **options)
    record_episode(ds, 0)
    for i in range(7):  # a take the operator throws away
        ds.add_frame(frame(3, i), task="discarded take")
    ds.clear_episode_buffer()
    record_episode(ds, 1)
    ds.close()
    ds = OurDataset.open(root, vcodec=vcodec, use_async_saver=True)
    record_episode(ds, 2)
    ds.close()


# --------------------------------------------------------------------------- fixtures


class Recorded:
    """A dataset recorded by our writer at parent/repo_id (the layout LeRobot's converter expects)."""

    def __init__(self, parent: Path, vcodec: str):
        self.repo_id = f"local/ours_{vcodec}"
        self.root = parent / self.repo_id
        self.vcodec = vcodec


@pytest.fixture(scope="module", params=["libsvtav1", "libx264"])
def recorded(request, tmp_path_factory) -> Recorded:
    rec = Recorded(tmp_path_factory.mktemp(f"lerobot_compat_{request.param}"), request.param)
    record(rec.root, rec.repo_id, rec.vcodec)
    return rec


@pytest.fixture(scope="module")
def LeRobotDataset(tmp_path_factory):
    """LeRobot's v2.1 reader, offline (a local dataset must never be fetched from a hub)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))
        yield lerobot_env.import_lerobot_dataset()


def open_with_lerobot(LeRobotDataset, rec: Recorded, **kwargs):
    return LeRobotDataset(rec.repo_id, root=rec.root, video_backend="pyav", **kwargs)


# --------------------------------------------------------------------------- checks


def assert_frame_is(decoded_chw: np.ndarray, episode: int, i: int, cam: str, where: str) -> None:
    """`decoded_chw` (float [3,h,w] in [0,1], LeRobot's layout) is frame i, not a neighbour."""
    got = np.transpose(decoded_chw, (1, 2, 0)).astype(np.float64) * 255.0
    candidates = [j for j in (i - 1, i, i + 1) if 0 <= j < EPISODE_LENGTHS[episode]]
    errors = {j: float(np.abs(got - camera_image(episode, j, cam)).mean()) for j in candidates}
    assert errors[i] < MAX_DECODE_MAE, f"{where}: {cam} differs from recorded frame {i} by MAE {errors[i]:.2f}"
    assert min(errors, key=errors.get) == i, f"{where}: {cam} looks like another frame: MAE by frame {errors}"


def assert_item_is(item: dict, index: int) -> None:
    episode, i = locate(index)
    where = f"item {index} (episode {episode}, frame {i})"
    np.testing.assert_array_equal(item["observation.state"].numpy(), state(episode, i), err_msg=where)
    np.testing.assert_array_equal(item["action"].numpy(), action(episode, i), err_msg=where)
    assert (int(item["index"]), int(item["episode_index"]), int(item["frame_index"])) == (index, episode, i), where
    assert float(item["timestamp"]) == pytest.approx(i / FPS, abs=1e-6), where
    assert item["task"] == EPISODE_TASKS[episode][i] == TASKS[int(item["task_index"])], where
    for cam in CAMERAS:
        assert tuple(item[f"observation.images.{cam}"].shape) == (3, *CAMERAS[cam]), where
        assert_frame_is(item[f"observation.images.{cam}"].numpy(), episode, i, cam, where)


# --------------------------------------------------------------------------- tests


def test_metadata_and_episode_boundaries(recorded, LeRobotDataset):
    ds = open_with_lerobot(LeRobotDataset, recorded)
    assert ds.meta.info["codebase_version"] == "v2.1"
    assert (ds.num_episodes, ds.num_frames, len(ds)) == (3, TOTAL_FRAMES, TOTAL_FRAMES)
    assert ds.fps == FPS and ds.meta.robot_type == "so101"
    assert ds.meta.total_chunks == 2 and (recorded.root / "data" / "chunk-001" / "episode_000002.parquet").exists()
    assert ds.meta.video_keys == VIDEO_KEYS and ds.meta.camera_keys == VIDEO_KEYS
    for key in ("observation.state", "action"):
        assert ds.features[key]["names"] == SO101_JOINT_NAMES and tuple(ds.meta.shapes[key]) == (6,)
    for key, (h, w) in zip(VIDEO_KEYS, CAMERAS.values()):
        assert tuple(ds.meta.shapes[key]) == (h, w, 3)
        assert ds.meta.info["features"][key]["info"]["video.codec"] == {"libsvtav1": "av1", "libx264": "h264"}[recorded.vcodec]
    assert ds.episode_data_index["from"].tolist() == EPISODE_STARTS
    assert ds.episode_data_index["to"].tolist() == [s + n for s, n in zip(EPISODE_STARTS, EPISODE_LENGTHS)]
    for ep, tasks in enumerate(EPISODE_TASKS):
        assert ds.meta.episodes[ep]["length"] == len(tasks)
        assert ds.meta.episodes[ep]["tasks"] == list(dict.fromkeys(tasks))
    assert ds.meta.tasks == dict(enumerate(TASKS))  # the discarded take's task is not there


def test_every_frame_reads_back_as_recorded(recorded, LeRobotDataset):
    ds = open_with_lerobot(LeRobotDataset, recorded)
    for index in range(len(ds)):
        assert_item_is(ds[index], index)


def test_episode_stats_are_what_lerobot_computes(recorded, LeRobotDataset, tmp_path):
    """LeRobot's own compute_episode_stats over the recorded frames gives the stats we wrote."""
    from PIL import Image
    from lerobot.datasets.compute_stats import aggregate_stats, compute_episode_stats

    ds = open_with_lerobot(LeRobotDataset, recorded)
    columns = ds.hf_dataset.with_format(None)
    lerobot_stats = []
    for ep, length in enumerate(EPISODE_LENGTHS):
        rows = columns.select(range(EPISODE_STARTS[ep], EPISODE_STARTS[ep] + length))
        episode_data = {key: np.asarray(rows[key], dtype=np.float64 if key in ("action", "observation.state") else None)
                        for key in ("action", "observation.state", "timestamp", "frame_index", "episode_index",
                                    "index", "task_index")}
        for cam in CAMERAS:
            paths = []
            for i in range(length):
                path = tmp_path / f"{cam}_{ep}_{i}.png"
                Image.fromarray(camera_image(ep, i, cam)).save(path)
                paths.append(str(path))
            episode_data[f"observation.images.{cam}"] = paths
        expected = compute_episode_stats(episode_data, ds.features)
        lerobot_stats.append(expected)
        ours = ds.meta.episodes_stats[ep]
        assert set(ours) == set(expected), f"episode {ep}: stats for {sorted(ours)} vs LeRobot's {sorted(expected)}"
        for key, by_stat in expected.items():
            for stat, value in by_stat.items():
                assert np.shape(ours[key][stat]) == np.shape(value), f"episode {ep} {key}.{stat} shape"
                np.testing.assert_allclose(ours[key][stat], value, rtol=1e-6, atol=1e-7, err_msg=f"episode {ep} {key}.{stat}")
    for key, by_stat in aggregate_stats(lerobot_stats).items():
        for stat, value in by_stat.items():
            np.testing.assert_allclose(np.asarray(ds.meta.stats[key][stat]), value, rtol=1e-6, atol=1e-7, err_msg=f"{key}.{stat}")


def test_delta_timestamps_give_action_chunks_padded_at_episode_ends(recorded, LeRobotDataset):
    chunk = 10
    delta = {
        "action": [k / FPS for k in range(chunk)],
        "observation.state": [-2 / FPS, -1 / FPS, 0.0],
        "observation.images.wrist": [-1 / FPS, 0.0],
    }
    ds = open_with_lerobot(LeRobotDataset, recorded, delta_timestamps=delta)
    for index in (0, 1, 29, 30, 70, 74, 75, 150, TOTAL_FRAMES - 1):
        episode, i = locate(index)
        last = EPISODE_LENGTHS[episode] - 1
        item = ds[index]
        where = f"item {index} (episode {episode}, frame {i})"
        future = [i + k for k in range(chunk)]
        np.testing.assert_array_equal(item["action"].numpy(), [action(episode, min(j, last)) for j in future], err_msg=where)
        assert item["action_is_pad"].tolist() == [j > last for j in future], where
        past = [i - 2, i - 1, i]
        np.testing.assert_array_equal(item["observation.state"].numpy(), [state(episode, max(j, 0)) for j in past], err_msg=where)
        assert item["observation.state_is_pad"].tolist() == [j < 0 for j in past], where
        wrist = item["observation.images.wrist"].numpy()
        assert wrist.shape == (2, 3, *CAMERAS["wrist"]), where
        assert_frame_is(wrist[0], episode, max(i - 1, 0), "wrist", where + " previous")
        assert_frame_is(wrist[1], episode, i, "wrist", where)
        assert item["observation.images.wrist_is_pad"].tolist() == [i == 0, False], where


@pytest.mark.flaky(reruns=2)
def test_torch_dataloader_with_workers(recorded, LeRobotDataset):
    import torch

    delta = {"action": [k / FPS for k in range(5)]}
    ds = open_with_lerobot(LeRobotDataset, recorded, delta_timestamps=delta)
    # A worker forked from a pytest that has run encoder/decoder threads can deadlock (1 CI-like run
    # of 3 hung here 300 s): a stuck worker fails after `timeout`, and the test is run again.
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True, num_workers=2, timeout=60,
                                         generator=torch.Generator().manual_seed(0))
    seen = 0
    for batch, _ in zip(loader, range(3)):
        assert tuple(batch["action"].shape) == (8, 5, 6)
        assert tuple(batch["observation.images.top"].shape) == (8, 3, *CAMERAS["top"])
        assert batch["observation.images.wrist"].dtype == torch.float32
        for row, index in enumerate(batch["index"].tolist()):
            episode, i = locate(index)
            np.testing.assert_array_equal(batch["action"][row, 0].numpy(), action(episode, i))
            np.testing.assert_array_equal(batch["observation.state"][row].numpy(), state(episode, i))
            assert_frame_is(batch["observation.images.wrist"][row].numpy(), episode, i, "wrist", f"batch item {index}")
            seen += 1
    assert seen == 24


def test_one_episode_selected_from_the_second_chunk(recorded, LeRobotDataset):
    ds = open_with_lerobot(LeRobotDataset, recorded, episodes=[2])
    assert len(ds) == EPISODE_LENGTHS[2]
    first, last = ds[0], ds[len(ds) - 1]
    assert_item_is(first, EPISODE_STARTS[2])
    assert_item_is(last, TOTAL_FRAMES - 1)


def test_lerobot_converter_turns_it_into_v30(recorded, tmp_path):
    """LeRobot 0.4.x's convert_dataset_v21_to_v30, then its v3.0 reader, in a child process
    (it needs datasets>=4, the v2.1 reader datasets<=3.6)."""
    if not lerobot_env.V30_PATH.is_dir():
        pytest.skip(f"no lerobot 0.4.x at {lerobot_env.V30_PATH}: run scripts/install_lerobot_for_tests.sh")
    parent = tmp_path / "convert"
    shutil.copytree(recorded.root, parent / recorded.repo_id)
    probe = sorted({0, 1, 29, 30, 74, 75, 130, TOTAL_FRAMES - 1})
    out = tmp_path / "v30.npz"
    child = Path(__file__).with_name("lerobot_v30_convert.py")
    result = subprocess.run(
        [sys.executable, str(child), str(parent), recorded.repo_id, str(out), *map(str, probe)],
        env=lerobot_env.converter_env(tmp_path / "hf_home"), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"conversion failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    got = np.load(out)
    info = json.loads(str(got["info"]))
    assert info["codebase_version"] == "v3.0"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, TOTAL_FRAMES, 3)
    assert got["episode_lengths"].tolist() == EPISODE_LENGTHS
    assert (parent / f"{recorded.repo_id}_old" / "meta" / "info.json").exists()  # the converter keeps the v2.1 original
    for index in range(TOTAL_FRAMES):
        episode, i = locate(index)
        where = f"v3.0 row {index}"
        np.testing.assert_array_equal(got["observation.state"][index], state(episode, i), err_msg=where)
        np.testing.assert_array_equal(got["action"][index], action(episode, i), err_msg=where)
        assert (got["index"][index], got["episode_index"][index], got["frame_index"][index]) == (index, episode, i), where
        assert float(got["timestamp"][index]) == pytest.approx(i / FPS, abs=1e-6), where
        assert got["task_index"][index] == TASKS.index(EPISODE_TASKS[episode][i]), where
    for row, index in enumerate(probe):
        episode, i = locate(index)
        where = f"v3.0 item {index}"
        item = {key[len("item/"):]: got[key][row] for key in got.files if key.startswith("item/")}
        np.testing.assert_array_equal(item["observation.state"], state(episode, i), err_msg=where)
        np.testing.assert_array_equal(item["action"], action(episode, i), err_msg=where)
        assert (item["index"], item["episode_index"], item["frame_index"]) == (index, episode, i), where
        assert item["task"] == EPISODE_TASKS[episode][i], where
        for cam in CAMERAS:
            assert_frame_is(item[f"observation.images.{cam}"], episode, i, cam, where)



def test_same_files_as_lerobots_own_writer(LeRobotDataset, tmp_path):
    """LeRobot 0.3.x's own recorder, handed the same features and frames, writes the same
    info.json (video info blocks included), episodes/tasks JSONL, parquet (schema, HF features
    metadata, values) and episode statistics as ours (both with the default libsvtav1)."""
    features = build_features(SO101_JOINT_NAMES, CAMERAS)
    their_features = {k: {**ft, "shape": tuple(ft["shape"])} for k, ft in features.items() if k not in DEFAULT_FEATURES}
    theirs = LeRobotDataset.create("local/theirs", fps=FPS, features=their_features, root=tmp_path / "theirs",
                                   robot_type="so101", video_backend="pyav")
    ours = OurDataset.create("local/ours", root=tmp_path / "ours", fps=FPS, features=features, robot_type="so101",
                             use_async_saver=False, codebase_version="v2.1")
    for episode in (0, 1):
        for i, task in enumerate(EPISODE_TASKS[episode]):
            theirs.add_frame(frame(episode, i), task=task)
            ours.add_frame(frame(episode, i), task=task)
        with no_real_time_promotion():  # LeRobot's encoder (SVT-AV1, as root) would leave pytest real-time
            theirs.save_episode()
        ours.save_episode()
    ours.close()
    a, b = tmp_path / "theirs", tmp_path / "ours"
    assert json.loads((b / "meta/info.json").read_text()) == json.loads((a / "meta/info.json").read_text())
    assert (b / "meta/tasks.jsonl").read_text() == (a / "meta/tasks.jsonl").read_text()
    their_episodes, our_episodes = (read_jsonl(root / "meta/episodes.jsonl") for root in (a, b))
    for episode in their_episodes:  # LeRobot lists an episode's tasks in set order (varies by run); ours by first use
        episode["tasks"] = sorted(episode["tasks"])
    assert [{**e, "tasks": sorted(e["tasks"])} for e in our_episodes] == their_episodes
    for episode in (0, 1):
        rel = f"data/chunk-000/episode_{episode:06d}.parquet"
        their_table, our_table = pq.read_table(a / rel), pq.read_table(b / rel)
        assert our_table.schema.equals(their_table.schema, check_metadata=True), rel
        assert our_table.equals(their_table), rel
    their_stats, our_stats = (read_jsonl(root / "meta/episodes_stats.jsonl") for root in (a, b))
    assert [s["episode_index"] for s in our_stats] == [s["episode_index"] for s in their_stats] == [0, 1]
    for theirs_ep, ours_ep in zip(their_stats, our_stats):
        assert set(ours_ep["stats"]) == set(theirs_ep["stats"])
        for key, by_stat in theirs_ep["stats"].items():
            assert set(ours_ep["stats"][key]) == set(by_stat), key
            for stat, value in by_stat.items():
                np.testing.assert_allclose(ours_ep["stats"][key][stat], value, rtol=1e-6, atol=1e-7,
                                           err_msg=f"episode {theirs_ep['episode_index']} {key}.{stat}")

@pytest.mark.parametrize("point", KILL_POINTS)
def test_loads_after_a_crash_once_reopened(point, LeRobotDataset, tmp_path):
    """SIGKILL at each point of a save (tests/crash_child.py: episode 0 committed, episode 1
    being saved), then our open() repairs: LeRobot reads every frame of what was saved.
    (Before open(), a kill between moving files into data/ and writing the metadata leaves a
    parquet LeRobot's reader loads and rejects, "timestamps unexpectedly violate the tolerance".)"""
    root = tmp_path / "ds"
    child = Path(__file__).with_name("crash_child.py")
    proc = subprocess.run([sys.executable, str(child), str(root), point, "sync"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"child was not SIGKILLed: {proc.returncode}\n{proc.stderr[-3000:]}"
    OurDataset.open(root, use_async_saver=False, vcodec="libx264").close()
    ds = LeRobotDataset("test/dataset", root=root, video_backend="pyav")
    saved = 1 if point == "mid_recording" else 2  # an episode never saved is kept aside, not committed
    frames_per_episode = 20  # crash_child's
    assert (ds.num_episodes, len(ds)) == (saved, saved * frames_per_episode)
    for index in range(len(ds)):
        item, (episode, i) = ds[index], divmod(index, frames_per_episode)
        recorded = make_frame(episode, i)
        for key in ("observation.state", "action"):
            np.testing.assert_array_equal(item[key].numpy(), recorded[key], err_msg=f"{point}: item {index} {key}")
        for key in [k for k in recorded if k.startswith("observation.images.")]:
            got = np.transpose(item[key].numpy(), (1, 2, 0)) * 255.0
            # dataset_factory's sawtooth images code less cleanly than camera_image's: a looser bound
            assert np.abs(got - recorded[key]).mean() < 3 * MAX_DECODE_MAE, f"{point}: item {index} {key}"
