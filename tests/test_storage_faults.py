"""Storage faults at library level, on real filesystems: nothing recorded is lost or reported saved when it is not.

Every scenario ends with: frames recorded == frames committed + frames named as recoverable.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dataset_factory import committed_states, create, expected_states_for, make_frame, record_episode
from storage_faults import read_only, tmpfs

from operating_platform.dataset import LeRobotDataset
from operating_platform.dataset import format as fmt
from operating_platform.dataset.writer import SavingStoppedError
from operating_platform.dataset.validate import validate_dataset


def reopen(root, **kwargs):
    return LeRobotDataset.open(root, use_async_saver=False, vcodec="libx264", **kwargs)


def test_save_failing_on_read_only_meta_is_committed_by_the_next_open(tmp_path):
    """The issue's repro: save, meta/ read-only for the 2nd save, unmount, save a 3rd, close, open."""
    with tmpfs(tmp_path / "disk", "64m") as disk:
        root = disk / "ds"
        ds = create(root, use_async_saver=True, async_save_max_retries=1)
        ds.async_saver.retry_backoff_s = 0.01
        record_episode(ds, 0, 6)
        ds.save_episode()
        assert ds.wait_for_save_completion(timeout=60)
        with read_only(root / "meta"):
            record_episode(ds, 1, 7)
            ds.save_episode()
            assert ds.wait_for_save_completion(timeout=60)
        status = ds.get_async_save_status()
        assert status["total_failed"] == 1 and status["total_completed"] == 1
        assert "Read-only file system" in status["last_error"]
        record_episode(ds, 2, 8)
        ds.save_episode()
        assert ds.wait_for_save_completion(timeout=60)
        status = ds.get_async_save_status()
        assert (status["total_completed"], status["total_failed"], status["total_held"]) == (1, 1, 1)
        assert status["saving_stopped"].startswith("episode 1 could not be saved: OSError: [Errno 30]")
        assert status["frames_recoverable"] == 15  # recorded 21 == committed 6 + recoverable 15
        held = [r for r in ds.get_async_save_results() if r["held"]]
        assert [r["episode_index"] for r in held] == [2] and "next open" in held[0]["error"]
        ds.close()
        assert ds.num_episodes == 1, "nothing is committed behind a failed episode"

        again = reopen(root)
        assert again.num_episodes == 3
        for ep, n in enumerate((6, 7, 8)):
            np.testing.assert_array_equal(committed_states(root, ep), expected_states_for(ep, n))
        assert [r["episode_index"] for r in fmt.read_jsonl(root / fmt.EPISODES_PATH)] == [0, 1, 2]
        assert [r["episode_index"] for r in fmt.read_jsonl(root / fmt.EPISODES_STATS_PATH)] == [0, 1, 2]
        assert again.num_frames == 6 + 7 + 8
        again.close()
        assert not (root / fmt.SPOOL_DIR).exists()
        assert validate_dataset(root).passed


def test_v30_save_failing_on_read_only_store_meta_is_committed_and_packed_by_the_next_open(tmp_path):
    """The issue's repro on v3.0 (the default): episodes are committed into the hidden store
    .episodes/ and packed at close, so the fault is the store's meta/ going read-only."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from operating_platform.dataset.v30.pack import store_root
    from operating_platform.dataset.v30.validate import validate_v30

    with tmpfs(tmp_path / "disk", "64m") as disk:
        root = disk / "ds"
        ds = create(root, use_async_saver=True, async_save_max_retries=1, codebase_version="v3.0")
        ds.async_saver.retry_backoff_s = 0.01
        record_episode(ds, 0, 6)
        ds.save_episode()
        assert ds.wait_for_save_completion(timeout=60)
        with read_only(store_root(root) / "meta"):
            record_episode(ds, 1, 7)
            ds.save_episode()
            assert ds.wait_for_save_completion(timeout=60)
        record_episode(ds, 2, 8)
        ds.save_episode()
        assert ds.wait_for_save_completion(timeout=60)
        status = ds.get_async_save_status()
        assert (status["total_completed"], status["total_failed"], status["total_held"]) == (1, 1, 1)
        assert "Read-only file system" in status["saving_stopped"]
        assert status["frames_recoverable"] == 15
        ds.close()
        assert fmt.read_json(root / fmt.INFO_PATH)["total_episodes"] == 1, "only the committed episode is packed"

        again = reopen(root)
        assert (again.num_episodes, again.num_frames) == (3, 21)
        again.close()
        data = pq.read_table(sorted((root / "data").rglob("*.parquet"))[0])
        for ep, n in enumerate((6, 7, 8)):
            rows = data.filter(pc.equal(data["episode_index"], ep))
            np.testing.assert_array_equal(np.array(rows["observation.state"].to_pylist(), dtype=np.float32),
                                          expected_states_for(ep, n))
        assert not spool_frames(store_root(root))
        assert validate_v30(root).passed


def spool_frames(root) -> int:
    """Frames left in the spool (recoverable) as the next open will see them."""
    from operating_platform.dataset.spool import load_spooled_episode, spooled_episode_dirs

    return sum(load_spooled_episode(p).num_frames for p in spooled_episode_dirs(root / fmt.SPOOL_DIR))


@pytest.mark.parametrize("fault_dir", [".staging", "data/chunk-000", "videos/chunk-000/observation.images.top", "meta"])
def test_every_commit_step_can_fail_and_be_retried(tmp_path, fault_dir):
    """A real EROFS at each step; the fault clears during the backoff; the retry's result is the clean one."""
    with tmpfs(tmp_path / "disk", "64m") as disk:
        root = disk / "ds"
        ds = create(root, use_async_saver=True, async_save_max_retries=5)
        ds.async_saver.retry_backoff_s = 0.3
        record_episode(ds, 0, 6)
        ds.save_episode()
        assert ds.wait_for_save_completion(timeout=60)
        (root / fault_dir).mkdir(parents=True, exist_ok=True)
        with read_only(root / fault_dir):
            record_episode(ds, 1, 7)
            ds.save_episode()
            deadline = 60
            while ds.get_async_save_status()["total_retries"] == 0 and deadline > 0:
                import time

                time.sleep(0.05)
                deadline -= 0.05
            assert ds.get_async_save_status()["total_retries"] >= 1
        assert ds.wait_for_save_completion(timeout=60)
        status = ds.get_async_save_status()
        assert (status["total_completed"], status["total_failed"], status["saving_stopped"]) == (2, 0, None)
        assert ds.num_episodes == 2 and ds.num_frames == 13
        assert [r["episode_index"] for r in fmt.read_jsonl(root / fmt.EPISODES_PATH)] == [0, 1]
        assert [r["episode_index"] for r in fmt.read_jsonl(root / fmt.EPISODES_STATS_PATH)] == [0, 1]
        ds.close()
        np.testing.assert_array_equal(committed_states(root, 1), expected_states_for(1, 7))
        assert validate_dataset(root).passed


def test_info_json_step_failing_leaves_memory_and_disk_consistent(tmp_path):
    """The commit point itself fails (info.json is a read-only mount point: EBUSY/EROFS): nothing advances."""
    with tmpfs(tmp_path / "disk", "64m") as disk:
        root = disk / "ds"
        ds = create(root)
        record_episode(ds, 0, 6)
        ds.save_episode()
        with read_only(root / fmt.INFO_PATH):
            record_episode(ds, 1, 7)
            with pytest.raises(OSError):
                ds.save_episode()
            assert ds.num_episodes == 1 and ds.num_frames == 6 and len(ds._episodes) == 1
            assert ds.saving_stopped and "episode 1 could not be saved" in ds.saving_stopped
            record_episode(ds, 2, 8)
            with pytest.raises(SavingStoppedError, match="next open"):
                ds.save_episode()
            ds.close()
        assert spool_frames(root) == 15
        again = reopen(root)
        assert (again.num_episodes, again.num_frames) == (3, 21)
        again.close()
        for ep, n in enumerate((6, 7, 8)):
            np.testing.assert_array_equal(committed_states(root, ep), expected_states_for(ep, n))
        assert validate_dataset(root).passed


def test_disk_full_mid_episode_keeps_every_frame_and_stops(tmp_path, caplog):
    """A ballast file fills a real tmpfs mid-episode: the episode is incomplete, never a short success."""
    from storage_faults import fill_disk

    from operating_platform.dataset.spool import SpoolWriteError

    with tmpfs(tmp_path / "disk", "8m") as disk:
        root = disk / "ds"
        ds = create(root, use_async_saver=True)
        record_episode(ds, 0, 10)
        ds.save_episode()
        assert ds.wait_for_save_completion(timeout=60)
        ballast = fill_disk(disk, 200_000)  # room for ~10 raw frames
        recorded = 0
        with pytest.raises(SpoolWriteError) as err:
            for i in range(1000):
                ds.add_frame(make_frame(1, i), task="pick the cube")
                recorded += 1
        message = str(err.value)
        assert "\n" not in message
        assert "No space left on device" in message and str(root / fmt.SPOOL_DIR) in message
        assert f"its {recorded} frames recorded before the fault are kept" in message
        assert "free is needed at" in message and "scripts/recover_episodes.py" in message
        assert "save the episode" not in message
        assert recorded > 0
        status = ds.get_async_save_status()
        assert status["saving_stopped"] and status["episodes_incomplete"] == 1
        assert status["frames_recoverable"] == recorded
        with pytest.raises(SavingStoppedError, match="incomplete"):  # an incomplete episode is never sealed
            ds.save_episode()
        ds.close()
        assert ds.num_episodes == 1
        ballast.unlink()  # the operator frees space

        again = reopen(root)
        assert again.num_episodes == 1 and len(again.partial_episodes) == 1
        assert spool_frames(root) == recorded
        assert 10 + recorded == again.num_frames + spool_frames(root)  # recorded == committed + recoverable
        again.close()
        import subprocess
        import sys
        from pathlib import Path

        script = Path(__file__).resolve().parents[1] / "scripts" / "recover_episodes.py"
        out = subprocess.run([sys.executable, str(script), str(root), "--include-partial", "--vcodec", "libx264"],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        final = reopen(root)
        assert (final.num_episodes, final.num_frames) == (2, 10 + recorded)
        final.close()
        np.testing.assert_array_equal(committed_states(root, 1), expected_states_for(1, recorded))


def test_disk_full_during_save_holds_it_and_the_next_open_commits_it(tmp_path):
    """The disk fills between recording and committing: the save fails, later ones wait, nothing is lost."""
    from storage_faults import fill_disk

    with tmpfs(tmp_path / "disk", "8m") as disk:
        root = disk / "ds"
        ds = create(root, use_async_saver=True, async_save_max_retries=1, live_encoding=False)
        ds.async_saver.retry_backoff_s = 0.01
        record_episode(ds, 0, 10)
        ds.save_episode()
        assert ds.wait_for_save_completion(timeout=60)
        record_episode(ds, 1, 12)
        ballast = fill_disk(disk, 0)
        try:
            ds.save_episode()
        except OSError:  # ended.json could not be written either: then the episode is incomplete
            pass
        assert ds.wait_for_save_completion(timeout=60)
        status = ds.get_async_save_status()
        assert status["saving_stopped"]
        assert status["total_completed"] == 1
        assert status["frames_recoverable"] == 12
        ds.close()
        ballast.unlink()
        again = reopen(root, recover_partial=True)
        assert (again.num_episodes, again.num_frames) == (2, 22)
        again.close()
        np.testing.assert_array_equal(committed_states(root, 1), expected_states_for(1, 12))
        assert validate_dataset(root).passed


PERMISSION_CHILD = """
import json, os, sys
from pathlib import Path
from dataset_factory import create, make_frame, record_episode
from operating_platform.dataset.spool import SpoolWriteError
from operating_platform.dataset.writer import SavingStoppedError

root, scenario = Path(sys.argv[1]), sys.argv[2]
ds = create(root, use_async_saver=True, async_save_max_retries=1)
ds.async_saver.retry_backoff_s = 0.01
record_episode(ds, 0, 6)
ds.save_episode()
assert ds.wait_for_save_completion(timeout=60)
out = {}
if scenario == "meta":
    os.chmod(root / "meta", 0o555)
    record_episode(ds, 1, 7)
    ds.save_episode()
    assert ds.wait_for_save_completion(timeout=60)
    os.chmod(root / "meta", 0o755)
    record_episode(ds, 2, 8)
    ds.save_episode()
    assert ds.wait_for_save_completion(timeout=60)
else:
    record_episode(ds, 1, 5)
    os.chmod(ds.episode_buffer.path / "observation.images.top.rgb", 0o444)
    try:
        ds.add_frame(make_frame(1, 5), task="pick the cube")
    except SpoolWriteError as e:
        out["error"] = str(e)
status = ds.get_async_save_status()
ds.close()
out.update(status)
print("RESULT " + json.dumps(out))
"""


@pytest.mark.parametrize("scenario", ["meta", "mid_episode"])
def test_permission_removed_with_capabilities_dropped(tmp_path, scenario):
    """Root obeys file modes once its capabilities are dropped (setpriv): EACCES at commit time and mid-episode."""
    import json

    from storage_faults import python_without_capabilities

    with tmpfs(tmp_path / "disk", "64m") as disk:
        root = disk / "ds"
        child = python_without_capabilities(PERMISSION_CHILD, argv=[str(root), scenario])
        assert child.returncode == 0, child.stderr[-3000:]
        result = json.loads(child.stdout.split("RESULT ", 1)[1])
        assert result["saving_stopped"] and "Permission denied" in result["saving_stopped"]
        if scenario == "meta":
            assert (result["total_completed"], result["total_failed"], result["total_held"]) == (1, 1, 1)
            assert result["frames_recoverable"] == 15
            again = reopen(root)
            assert (again.num_episodes, again.num_frames) == (3, 21)
            again.close()
            for ep, n in enumerate((6, 7, 8)):
                np.testing.assert_array_equal(committed_states(root, ep), expected_states_for(ep, n))
        else:
            assert "Permission denied" in result["error"] and "observation.images.top.rgb" in result["error"]
            assert "its 5 frames recorded before the fault are kept" in result["error"]
            assert result["frames_recoverable"] == 5
            for f in (root / fmt.SPOOL_DIR).rglob("*.rgb"):
                f.chmod(0o644)  # permission restored
            again = reopen(root, recover_partial=True)
            assert (again.num_episodes, again.num_frames) == (2, 11)
            again.close()
            np.testing.assert_array_equal(committed_states(root, 1), expected_states_for(1, 5))
        assert validate_dataset(root).passed


def test_repeated_and_missing_metadata_rows_from_older_versions_are_named_and_repaired(tmp_path):
    """What the old writer left after a retried metadata write: episodes.jsonl indices [0, 1, 1, 1, 2]."""
    import json

    from dataset_factory import write_dataset

    root = write_dataset(tmp_path / "ds", lengths=(5, 6, 7))
    episodes = fmt.read_jsonl(root / fmt.EPISODES_PATH)
    stats = fmt.read_jsonl(root / fmt.EPISODES_STATS_PATH)
    tasks = fmt.read_jsonl(root / fmt.TASKS_PATH)
    stale = {**episodes[1], "length": 99}
    fmt.write_jsonl_atomic(root / fmt.EPISODES_PATH, [episodes[0], stale, episodes[1], stale, episodes[2]])
    fmt.write_jsonl_atomic(root / fmt.EPISODES_STATS_PATH, [stats[0], stats[1], stats[1]])  # episode 2 missing
    fmt.write_jsonl_atomic(root / fmt.TASKS_PATH, [*tasks, tasks[0]])

    report = validate_dataset(root)
    assert not report.passed
    text = report.format_text()
    assert "episode_index 1 appears 3 times" in text
    assert "no entry for episode 2" in text
    assert "task_index 0 repeated" in text

    ds = reopen(root)
    ds.close()
    assert fmt.read_jsonl(root / fmt.EPISODES_PATH) == episodes
    assert fmt.read_jsonl(root / fmt.TASKS_PATH) == tasks
    repaired = fmt.read_jsonl(root / fmt.EPISODES_STATS_PATH)
    assert [r["episode_index"] for r in repaired] == [0, 1, 2]
    assert json.dumps(repaired[2]["stats"]["observation.state"]) == json.dumps(stats[2]["stats"]["observation.state"])
    np.testing.assert_allclose(np.array(repaired[2]["stats"]["observation.images.top"]["mean"]),
                               np.array(stats[2]["stats"]["observation.images.top"]["mean"]), atol=0.02)
    assert validate_dataset(root).passed


class _SaverFeed:
    """Feeds the dataflow saver's logic class the recorder's messages, numbered."""

    def __init__(self, root):
        from operating_platform.dataflow.messages import EpisodeLayout, SaverStatus, decode_status
        from operating_platform.dataflow.saver import Saver, SaverConfig
        from operating_platform.hardware.base import SO101_JOINT_NAMES

        self.layout = EpisodeLayout(list(SO101_JOINT_NAMES), {"top": (64, 96)})
        config = SaverConfig(root=str(root), vcodec="libx264")
        self.said, self.seq = [], 0
        self.saver = Saver(config.open_dataset, lambda o, v, m: decode_status(v, SaverStatus), say=self.said.append)

    def control(self, kind, episode):
        from operating_platform.dataflow.messages import encode_episode_control

        self.seq += 1
        self.saver.on_episode(*encode_episode_control(kind, self.seq, episode, "stack blocks", self.layout))

    def frames(self, episode, n, first=0):
        from operating_platform.dataflow.messages import encode_episode_frame

        for i in range(first, first + n):
            self.seq += 1
            image = np.full((64, 96, 3), i % 256, np.uint8)
            self.saver.on_episode(*encode_episode_frame(self.seq, episode, i, self.layout, np.full(6, i, np.float32),
                                                        np.full(6, -i, np.float32), {"top": image}, 0))

    def episode(self, episode, n):
        self.control("begin", episode)
        self.frames(episode, n)
        self.control("end", episode)


def test_saver_node_logic_turns_a_full_disk_into_one_fatal_error_and_names_the_kept_frames(tmp_path):
    """The dataflow saver's logic class on a real tmpfs: the status stops the recorder, the summary says what is kept."""
    from storage_faults import fill_disk

    with tmpfs(tmp_path / "disk", "8m") as disk:
        s = _SaverFeed(disk / "ds")
        s.episode(0, 10)
        assert s.saver.ds.wait_for_save_completion(timeout=60)
        s.control("begin", 1)
        s.frames(1, 3)
        ballast = fill_disk(disk, 0)
        s.frames(1, 400, first=3)  # more than the reserve holds: the rest is refused, counted, said once
        status = s.saver.status()
        assert status.fatal and "No space left on device" in status.fatal and str(disk / "ds") in status.fatal
        assert status.free_bytes is not None and status.minutes_left == 0.0 and status.space_low
        errors = [line for line in s.said if "✗" in line]
        assert len(errors) == 1, errors
        kept = status.frames_recoverable
        refused = status.rejected["frame (storage fault)"]
        assert kept > 3 and kept + refused == 403  # every frame is either kept or counted as refused
        s.control("finish", 1)
        assert any(line.startswith(f"[saver] ✗ {kept} frames not committed, kept for recovery") for line in s.said), s.said
        # v3.0 (the default): the episode committed into the store could not be packed on the full disk either;
        # it is named with the command that packs it, and the next open packs it.
        assert "scripts/pack_dataset.py" in s.saver.ds.pack_error and str(disk / "ds") in s.saver.ds.pack_error
        ballast.unlink()
        again = reopen(disk / "ds", recover_partial=True)
        assert again.num_frames == 10 + kept
        again.close()


def test_a_spool_counts_as_committed_only_when_its_content_is_in_the_dataset(tmp_path):
    """Killed after info.json named an episode, before its spool went; the next episode's spool waits.

    Both have the same joint values (an arm standing still) and length: only the pixels differ,
    and the open still tells them apart — the committed one goes, the other is committed.
    """
    import shutil

    from dataset_factory import CAMERAS

    def still_frame(shade):
        frame = {"observation.state": np.zeros(6, np.float32), "action": np.zeros(6, np.float32)}
        for cam, (h, w) in CAMERAS.items():
            frame[f"observation.images.{cam}"] = np.full((h, w, 3), shade, np.uint8)
        return frame

    root = tmp_path / "ds"
    ds = create(root)
    for _ in range(8):
        ds.add_frame(still_frame(40), task="pick the cube")
    first = ds.end_episode()
    shutil.copytree(first.path, tmp_path / "first-spool")
    ds.commit_saved_episode(first)
    for _ in range(8):
        ds.add_frame(still_frame(200), task="pick the cube")
    second = ds.end_episode()  # handed over, never committed (the process dies)
    ds.close()
    shutil.copytree(tmp_path / "first-spool", first.path)

    again = reopen(root)
    assert again.num_episodes == 2
    again.close()
    assert not (root / fmt.SPOOL_DIR).exists()
    stats = fmt.read_jsonl(root / fmt.EPISODES_STATS_PATH)
    means = [r["stats"]["observation.images.top"]["mean"][0][0][0] for r in stats]
    assert means == pytest.approx([40 / 255, 200 / 255])
    assert second.num_frames == 8
    assert validate_dataset(root).passed
