"""AsyncEpisodeSaver against real saves (real spool, real PyAV encodes, real parquet) in a temp dir.

Runs under pytest and directly: `python tests/test_async_episode_saver.py [-v]`.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
import unittest
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from dataset_factory import committed_states, create, expected_states_for, make_frame, record_episode  # noqa: E402

from operating_platform.dataset import LeRobotDataset  # noqa: E402
from operating_platform.dataset.spool import SpoolClosedError  # noqa: E402
from operating_platform.dataset.video import decode_video_frames  # noqa: E402
from operating_platform.saving import AsyncEpisodeSaver  # noqa: E402


class Gated:
    """A real dataset (no saver of its own) and a commit step that waits for `gate`: holds saves pending."""

    def __init__(self, root: Path, **kwargs):
        self.ds = create(root, use_async_saver=False, **kwargs)
        self.gate = threading.Event()

    def commit(self, buffer, index, deadline):
        self.gate.wait(30)
        self.ds.commit_saved_episode(buffer, index, deadline)

    def saver(self, test: unittest.TestCase, **kwargs) -> AsyncEpisodeSaver:
        saver = AsyncEpisodeSaver(self.commit, self.ds.abandon_saved_episode, **kwargs)
        test.addCleanup(saver.stop, wait=False)
        test.addCleanup(self.gate.set)
        return saver


class AsyncEpisodeSaverTest(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="async_saver_"))
        self.root = self.tmp / "ds"

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _saver_for(self, ds, **kwargs) -> AsyncEpisodeSaver:
        saver = AsyncEpisodeSaver(ds, **kwargs)  # the reference form: the dataset's commit and abandon steps
        self.addCleanup(saver.stop, wait=False)
        return saver

    # ----------------------------------------------------------------- basics

    def test_successful_save_execution(self):
        ds = create(self.root, use_async_saver=True)
        record_episode(ds, 0, 12)
        self.assertEqual(ds.save_episode(), 0)
        self.assertTrue(ds.wait_for_save_completion(timeout=60))
        ds.close()
        np.testing.assert_array_equal(committed_states(self.root, 0), expected_states_for(0, 12))
        self.assertEqual(len(decode_video_frames(self.root / "videos/chunk-000/observation.images.top/episode_000000.mp4")), 12)
        info = json.loads((self.root / "meta/info.json").read_text())
        self.assertEqual((info["total_episodes"], info["total_frames"], info["total_videos"]), (1, 12, 2))

    def test_episode_index_increment(self):
        ds = create(self.root, use_async_saver=True)
        indices = []
        for ep in range(3):
            record_episode(ds, ep, 5)
            indices.append(ds.save_episode())
        ds.close()
        self.assertEqual(indices, [0, 1, 2])
        episodes = [json.loads(line) for line in (self.root / "meta/episodes.jsonl").read_text().splitlines()]
        self.assertEqual([e["episode_index"] for e in episodes], [0, 1, 2])

    def test_concurrent_queue_saves(self):
        """Episodes queued while earlier ones are still saving all land, in index order, intact."""
        g = Gated(self.root)
        ds, saver = g.ds, g.saver(self, max_queue_size=10)
        for ep in range(5):
            record_episode(ds, ep, 6 + ep)
            self.assertTrue(saver.submit_episode(ds.end_episode(), ep))
        self.assertEqual(saver.get_status()["pending_tasks"], 5)
        g.gate.set()
        self.assertTrue(saver.wait_for_completion(timeout=60))
        for ep in range(5):
            np.testing.assert_array_equal(committed_states(self.root, ep), expected_states_for(ep, 6 + ep))
        self.assertEqual([r.episode_index for r in saver.get_results()], [0, 1, 2, 3, 4])

    def test_deep_copy_isolation(self):
        """What was submitted cannot change: frames are copied out at add_frame and the
        sealed buffer refuses further writes; the caller's later mutations don't leak in."""
        g = Gated(self.root)
        ds, saver = g.ds, g.saver(self)
        frames = [make_frame(0, i) for i in range(8)]
        for f in frames:
            ds.add_frame(f, task="pick the cube")
        buffer = ds.end_episode()
        saver.submit_episode(buffer, 0)
        for f in frames:  # caller reuses its arrays, as a recording loop does
            f["observation.state"][:] = -999
            f["observation.images.top"][:] = 0
        with self.assertRaises(SpoolClosedError):
            buffer.add_frame(make_frame(0, 99), task="pick the cube")
        self.assertIsNone(ds.episode_buffer)
        record_episode(ds, 1, 4)  # next episode goes to a fresh buffer
        g.gate.set()
        self.assertTrue(saver.wait_for_completion(timeout=60))
        np.testing.assert_array_equal(committed_states(self.root, 0), expected_states_for(0, 8))
        video = decode_video_frames(self.root / "videos/chunk-000/observation.images.top/episode_000000.mp4")
        self.assertGreater(min(float(v.mean()) for v in video), 20.0)  # not the zeroed arrays

    # ----------------------------------------------------------------- queue and lifecycle

    def test_queue_full_handling(self):
        """A full queue blocks the caller with a visible warning; nothing is dropped or reordered."""
        g = Gated(self.root)
        ds, saver = g.ds, g.saver(self, max_queue_size=1)
        record_episode(ds, 0, 3)
        saver.submit_episode(ds.end_episode(), 0)  # taken by the worker (blocked on the gate)
        time.sleep(0.2)
        record_episode(ds, 1, 3)
        saver.submit_episode(ds.end_episode(), 1)  # fills the queue
        record_episode(ds, 2, 3)
        third = ds.end_episode()
        returned = threading.Event()
        with self.assertLogs("AsyncEpisodeSaver", level="WARNING") as logs:
            t = threading.Thread(target=lambda: (saver.submit_episode(third, 2), returned.set()))
            t.start()
            time.sleep(0.3)
            self.assertFalse(returned.is_set(), "submit must wait for a free slot, not drop")
            g.gate.set()
            t.join(30)
        self.assertTrue(returned.is_set())
        self.assertTrue(any("Save queue full" in line for line in logs.output))
        self.assertTrue(saver.wait_for_completion(timeout=60))
        status = saver.get_status()
        self.assertEqual((status["total_completed"], status["total_failed"]), (3, 0))
        for ep in range(3):
            np.testing.assert_array_equal(committed_states(self.root, ep), expected_states_for(ep, 3))

    def test_wait_all_complete(self):
        g = Gated(self.root)
        ds, saver = g.ds, g.saver(self)
        for ep in range(3):
            record_episode(ds, ep, 4)
            saver.submit_episode(ds.end_episode(), ep)
        self.assertFalse(saver.wait_for_completion(timeout=0.2))
        self.assertEqual(saver.status().pending_tasks, 3)
        g.gate.set()
        self.assertTrue(saver.wait_for_completion(timeout=60))
        self.assertEqual(saver.get_status()["pending_tasks"], 0)
        self.assertEqual(ds.num_episodes, 3)

    def test_stop_with_pending_saves(self):
        g = Gated(self.root)
        ds, saver = g.ds, AsyncEpisodeSaver(g.commit, g.ds.abandon_saved_episode)
        for ep in range(3):
            record_episode(ds, ep, 4)
            saver.submit_episode(ds.end_episode(), ep)
        threading.Timer(0.3, g.gate.set).start()
        self.assertTrue(saver.stop(wait=True, timeout=60))
        status = saver.status()
        self.assertEqual((status.total_submitted, status.total_completed, status.total_failed), (3, 3, 0))
        self.assertEqual(ds.num_episodes, 3)
        self.assertFalse(saver.get_status()["worker_alive"])
        self.assertFalse(saver.submit_episode(object(), 9), "a stopped saver refuses new work")

    def test_get_status(self):
        g = Gated(self.root)
        ds, saver = g.ds, g.saver(self)
        status = saver.get_status()
        for key in ("is_running", "total_submitted", "total_completed", "total_failed", "queue_size",
                    "pending_tasks", "last_error", "worker_alive", "total_retries"):
            self.assertIn(key, status)
        self.assertTrue(status["is_running"] and status["worker_alive"])
        record_episode(ds, 0, 3)
        saver.submit_episode(ds.end_episode(), 0)
        self.assertEqual(saver.get_status()["total_submitted"], 1)
        self.assertEqual(saver.get_status()["pending_tasks"], 1)
        g.gate.set()
        saver.wait_for_completion(timeout=60)
        status = saver.get_status()
        self.assertEqual((status["total_completed"], status["pending_tasks"], status["last_error"]), (1, 0, None))

    def test_get_results(self):
        ds = create(self.root)
        saver = self._saver_for(ds)
        record_episode(ds, 0, 3)
        saver.submit_episode(ds.end_episode(), 0)
        results = saver.get_results(timeout=60)
        self.assertEqual(len(results), 1)
        r = results[0]
        self.assertTrue(r.success)
        self.assertEqual((r.episode_index, r.attempts, r.error), (0, 1, None))
        self.assertGreater(r.completed_at, r.submitted_at)
        self.assertEqual(saver.get_results(), [])

    # ----------------------------------------------------------------- races

    def test_a_submit_racing_stop_is_saved_or_refused_never_lost(self):
        """Submits from another thread while stop() runs: each accepted episode is committed or
        abandoned (and reported), each refused one is not touched, none lands after the stop."""
        for trial in range(40):
            committed, abandoned, accepted = [], [], []

            def commit(buffer, index, deadline):
                time.sleep(0.001)
                committed.append(index)

            saver = AsyncEpisodeSaver(commit, lambda buffer, error, index: abandoned.append(index), max_queue_size=2)

            def submit_all():
                for index in range(30):
                    if saver.submit_episode(object(), index):
                        accepted.append(index)

            submitter = threading.Thread(target=submit_all)
            submitter.start()
            time.sleep(0.002 * (trial % 10))
            self.assertTrue(saver.stop(wait=trial % 2 == 0, timeout=60), f"trial {trial}")
            submitter.join(60)
            self.assertFalse(submitter.is_alive())
            self.assertEqual(accepted, list(range(len(accepted))), "once refused, every later submit is refused")
            self.assertEqual(sorted(committed + abandoned), accepted, f"trial {trial}")
            results = saver.get_results()
            self.assertEqual([r.episode_index for r in results], accepted)
            self.assertEqual([r.success for r in results], [i in committed for i in accepted])
            self.assertFalse(saver.submit_episode(object(), 99))

    def test_a_submit_waiting_for_a_slot_when_stop_gives_up_is_refused(self):
        gate = threading.Event()
        self.addCleanup(gate.set)
        committed = []
        saver = AsyncEpisodeSaver(lambda buffer, index, deadline: (gate.wait(30), committed.append(index)),
                                  lambda buffer, error, index: None, max_queue_size=1)
        self.assertTrue(saver.submit_episode(object(), 0))
        self.assertTrue(saver.submit_episode(object(), 1))  # the worker holds 0; 1 fills the queue
        outcome = []
        waiting = threading.Thread(target=lambda: outcome.append(saver.submit_episode(object(), 2)))
        waiting.start()
        time.sleep(0.3)
        self.assertEqual(outcome, [], "a full queue blocks the submit")
        self.assertFalse(saver.stop(wait=True, timeout=0.5), "the saves cannot finish while the commit hangs")
        waiting.join(30)
        self.assertEqual(outcome, [False], "refused once the stop sentinel is queued, not put after it")
        gate.set()
        deadline = time.monotonic() + 60
        while len(committed) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(committed, [0, 1], "what was accepted before the stop is still saved")
        self.assertEqual(saver.status().total_submitted, 2)

    def test_stop_takes_at_most_its_timeout(self):
        gate = threading.Event()
        self.addCleanup(gate.set)
        saver = AsyncEpisodeSaver(lambda buffer, index, deadline: gate.wait(30), lambda buffer, error, index: None)
        for index in range(3):
            saver.submit_episode(object(), index)
        started = time.monotonic()
        self.assertFalse(saver.stop(wait=True, timeout=2.0))
        elapsed = time.monotonic() - started
        self.assertGreaterEqual(elapsed, 2.0)
        self.assertLess(elapsed, 3.5, "one timeout for the drain and the join together, not one each")

    def test_the_index_save_episode_returns_is_the_index_committed(self):
        ds = create(self.root, use_async_saver=True)
        returned = []
        for take in range(5):
            record_episode(ds, take, 3 + take)
            if take == 2:
                ds.clear_episode_buffer()  # re-recorded: no index used
                continue
            returned.append(ds.save_episode())
        self.assertTrue(ds.wait_for_save_completion(timeout=60))
        results = ds.get_async_save_results()
        ds.close()
        self.assertEqual(returned, [0, 1, 2, 3])
        self.assertEqual([r["episode_index"] for r in results], returned)
        episodes = [json.loads(line) for line in (self.root / "meta/episodes.jsonl").read_text().splitlines()]
        self.assertEqual([(e["episode_index"], e["length"]) for e in episodes], [(0, 3), (1, 4), (2, 6), (3, 7)])

    def test_a_commit_under_another_index_is_refused_and_the_frames_kept(self):
        from operating_platform.dataset.writer import EpisodeIndexError

        ds = create(self.root)
        record_episode(ds, 0, 4)
        buffer = ds.end_episode()
        with self.assertRaisesRegex(EpisodeIndexError, "handed over as episode 3 but would be committed as episode 0"):
            ds.commit_saved_episode(buffer, 3)
        self.assertEqual(ds.num_episodes, 0)
        self.assertTrue(buffer.path.exists())
        ds.commit_saved_episode(buffer, 0)
        self.assertEqual(ds.num_episodes, 1)

    # ----------------------------------------------------------------- failures

    def _block_data_dir(self) -> Path:
        """A regular file where the chunk directory must go: a real, root-proof write failure."""
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        blocker = self.root / "data" / "chunk-000"
        blocker.write_text("not a directory")
        return blocker

    def test_retry_then_success(self):
        ds = create(self.root)
        # Backoffs of 1, 2, 4 s: the fault is cleared right after the first failure is seen, long
        # before the next attempt, however slow a loaded machine is to schedule this thread.
        saver = self._saver_for(ds, max_retries=3, retry_backoff_s=1.0)
        blocker = self._block_data_dir()
        record_episode(ds, 0, 5)
        with self.assertLogs("AsyncEpisodeSaver", level="WARNING") as logs:
            saver.submit_episode(ds.end_episode(), 0)
            deadline = time.monotonic() + 60
            while saver.get_status()["total_retries"] == 0 and time.monotonic() < deadline:
                time.sleep(0.01)  # wait for the event (first attempt failed), not for a fixed time
            blocker.unlink()  # the fault clears while the saver backs off
            self.assertTrue(saver.wait_for_completion(timeout=60))
        self.assertTrue(any("retrying in" in line for line in logs.output))
        [result] = saver.get_results()
        self.assertTrue(result.success)
        self.assertGreaterEqual(result.attempts, 2)
        self.assertGreaterEqual(saver.get_status()["total_retries"], 1)
        np.testing.assert_array_equal(committed_states(self.root, 0), expected_states_for(0, 5))

    def test_failure_reported_after_max_retries_keeps_frames(self):
        ds = create(self.root)
        saver = self._saver_for(ds, max_retries=2, retry_backoff_s=0.01)
        blocker = self._block_data_dir()
        record_episode(ds, 0, 5)
        buffer = ds.end_episode()
        with self.assertLogs("AsyncEpisodeSaver", level="ERROR") as logs:
            saver.submit_episode(buffer, 0)
            self.assertTrue(saver.wait_for_completion(timeout=60))
        [result] = saver.get_results()
        self.assertFalse(result.success)
        self.assertEqual(result.attempts, 3)
        self.assertIn("chunk-000", result.error)
        self.assertEqual(result.spool_path, str(buffer.path))
        line = next(line for line in logs.output if "failed after 2 retries" in line)
        self.assertIn(str(buffer.path), line)
        self.assertTrue(buffer.path.exists(), "frames of a failed save stay in the spool")
        self.assertEqual(saver.get_status()["total_failed"], 1)
        self.assertIn("chunk-000", saver.get_status()["last_error"])
        saver.stop()
        ds.close()
        blocker.unlink()
        reopened = LeRobotDataset.open(self.root, use_async_saver=False, vcodec="libx264")
        self.assertEqual(reopened.num_episodes, 1, "the spooled episode is committed on reopen")
        np.testing.assert_array_equal(committed_states(self.root, 0), expected_states_for(0, 5))

    def test_save_timeout(self):
        ds = create(self.root, live_encoding=False)
        saver = self._saver_for(ds, save_timeout=0.0, max_retries=1, retry_backoff_s=0.01)
        record_episode(ds, 0, 5)
        saver.submit_episode(ds.end_episode(), 0)
        self.assertTrue(saver.wait_for_completion(timeout=60))
        [result] = saver.get_results()
        self.assertFalse(result.success)
        self.assertIn("save_timeout", result.error)
        self.assertEqual(ds.num_episodes, 0)

    # ----------------------------------------------------------------- dataset-level API

    def test_dataset_async_api(self):
        ds = create(self.root, use_async_saver=False)
        self.assertFalse(ds.get_async_save_status()["is_running"])
        record_episode(ds, 0, 4)
        self.assertFalse(ds.save_episode_async(), "no saver: caller must fall back to save_episode()")
        self.assertIsNotNone(ds.episode_buffer, "a refused async save leaves the episode untouched")
        ds.enable_async_saving(max_queue_size=5, save_timeout=60.0)
        self.assertTrue(ds.save_episode_async())
        self.assertTrue(ds.wait_for_async_saves(timeout=60))
        self.assertEqual(ds.get_async_save_status()["total_completed"], 1)
        self.assertEqual([r["success"] for r in ds.get_async_save_results()], [True])
        ds.disable_async_saving(wait_for_completion=True)
        self.assertIsNone(ds.async_saver)
        record_episode(ds, 1, 4)
        self.assertEqual(ds.save_episode(), 1)  # synchronous again
        self.assertEqual(ds.num_episodes, 2)
        ds.start_async_saver()
        record_episode(ds, 2, 4)
        t0 = time.perf_counter()
        ds.save_episode()
        self.assertTrue(ds.wait_for_save_completion(timeout=60))
        ds.stop_async_saver()
        self.assertEqual(ds.num_episodes, 3)
        self.assertLess(time.perf_counter() - t0, 60)

    def test_sync_and_async_produce_identical_datasets(self):
        roots = {}
        for mode in ("sync", "async"):
            root = self.tmp / mode
            ds = create(root, use_async_saver=(mode == "async"))
            for ep, n in enumerate((9, 14, 7)):
                record_episode(ds, ep, n, task=f"task {ep % 2}")
                ds.save_episode()
            ds.close()
            roots[mode] = root
        files = {m: sorted(str(p.relative_to(r)) for p in r.rglob("*") if p.is_file()) for m, r in roots.items()}
        self.assertEqual(files["sync"], files["async"])
        for rel in files["sync"]:
            a, b = roots["sync"] / rel, roots["async"] / rel
            if rel.endswith(".parquet"):
                self.assertTrue(pq.read_table(a).equals(pq.read_table(b)), rel)
            elif rel.endswith(".mp4"):
                for fa, fb in zip(decode_video_frames(a), decode_video_frames(b), strict=True):
                    np.testing.assert_array_equal(fa, fb)
            else:
                self.assertEqual(a.read_text(), b.read_text(), rel)

    def test_batch_encoding_defers_commit(self):
        ds = create(self.root, batch_encoding_size=2)
        record_episode(ds, 0, 4)
        ds.save_episode()
        self.assertEqual(ds.num_episodes, 0, "first episode of a batch waits for the batch")
        self.assertFalse((self.root / "videos").exists())
        record_episode(ds, 1, 4)
        ds.save_episode()
        self.assertEqual(ds.num_episodes, 2)
        record_episode(ds, 2, 4)
        ds.save_episode()
        self.assertEqual(ds.num_episodes, 2)
        ds.close()  # leftovers are encoded at close
        self.assertEqual(LeRobotDataset.open(self.root, use_async_saver=False).num_episodes, 3)

    def test_clear_episode_buffer_leaves_no_trace(self):
        ds = create(self.root, use_async_saver=True)
        record_episode(ds, 0, 6)
        ds.clear_episode_buffer()
        record_episode(ds, 1, 5)
        self.assertEqual(ds.save_episode(), 0)
        ds.close()
        np.testing.assert_array_equal(committed_states(self.root, 0), expected_states_for(1, 5))
        leftovers = [p for p in self.root.rglob("*") if ".spool" in p.parts or ".staging" in p.parts]
        self.assertEqual(leftovers, [])

    def test_resume_appends_and_refuses_mismatch(self):
        ds = create(self.root)
        record_episode(ds, 0, 5)
        ds.save_episode()
        ds.close()
        from operating_platform.dataset import DatasetFormatError, build_features

        with self.assertRaisesRegex(DatasetFormatError, "fps differs"):
            LeRobotDataset.open(self.root, fps=15)
        with self.assertRaisesRegex(DatasetFormatError, "cameras differ"):
            LeRobotDataset.open(self.root, features=build_features(["a"] * 6, {"top": (48, 64)}))
        with self.assertRaisesRegex(DatasetFormatError, "robot_type differs"):
            LeRobotDataset.open(self.root, robot_type="koch")
        resumed = LeRobotDataset.open(self.root, fps=30, robot_type="so101", use_async_saver=True, vcodec="libx264")
        record_episode(resumed, 1, 6)
        self.assertEqual(resumed.save_episode(), 1)
        resumed.close()
        self.assertEqual(json.loads((self.root / "meta/info.json").read_text())["total_frames"], 11)

    def test_add_frame_rejects_bad_input_without_corrupting(self):
        ds = create(self.root)
        record_episode(ds, 0, 3)
        bad = make_frame(0, 3)
        bad["observation.images.top"] = bad["observation.images.top"].astype(np.float32)
        with self.assertRaisesRegex(ValueError, "observation.images.top"):
            ds.add_frame(bad, task="pick the cube")
        short = make_frame(0, 3)
        short["action"] = short["action"][:5]
        with self.assertRaisesRegex(ValueError, "'action' has shape"):
            ds.add_frame(short, task="pick the cube")
        with self.assertRaisesRegex(ValueError, "missing feature 'observation.state'"):
            ds.add_frame({k: v for k, v in make_frame(0, 3).items() if k != "observation.state"}, task="x")
        ds.save_episode()
        ds.close()
        np.testing.assert_array_equal(committed_states(self.root, 0), expected_states_for(0, 3))


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    unittest.main()
