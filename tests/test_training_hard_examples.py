"""Hard-example tracking: top-K buffer, lazy images, merging and gathering across processes."""

import gc
import json
import multiprocessing as mp
import threading
import weakref

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from training_fixtures import gather_worker

from operating_platform.training.gather import CollectiveError, TcpCollective, free_port
from operating_platform.training.hard_example_report import caption_lines, log_to_wandb, write_report
from operating_platform.training.hard_examples import HardExampleTracker, merge_payloads

IMG = "observation.images.top"


def batch_of(n, value=0, hw=(20, 30)):
    return {IMG: np.full((n, *hw, 3), value, np.uint8), "task": [f"task {i}" for i in range(n)], "index": np.arange(n) + 1000}


@given(st.lists(st.lists(st.floats(0, 20, allow_nan=False), min_size=1, max_size=12), min_size=1, max_size=12), st.integers(1, 10))
@settings(max_examples=60, deadline=None)
def test_buffer_is_the_top_k_sorted_with_matching_keys(steps, k):
    tracker = HardExampleTracker(max_hard_examples=k, resize_hw=(4, 4))
    for step, losses in enumerate(steps):
        tracker.update(losses)
        tracker.add_local_examples(step, batch_of(len(losses), hw=(4, 4)), losses)
    losses = [e.loss for e in tracker.buffer]
    assert losses == sorted(np.concatenate(steps).tolist(), reverse=True)[:k]
    assert tracker.keys == {e.key for e in tracker.buffer} and len(tracker.keys) == len(losses)


def test_same_sample_is_not_added_twice():
    tracker = HardExampleTracker(max_hard_examples=10)
    batch = batch_of(3)
    for _ in range(2):
        tracker.add_local_examples(5, batch, [1.0, 9.0, 3.0], global_idx_base=10, process_idx=2)
    assert sorted(tracker.keys) == [(2, 5, 10), (2, 5, 11), (2, 5, 12)]
    assert tracker.buffer[0].dataset_index == 1001


def test_entries_keep_their_own_image_not_the_batch():
    tracker = HardExampleTracker(max_hard_examples=2, resize_hw=(5, 6))
    batch = batch_of(4, value=77)
    images = weakref.ref(batch[IMG])
    tracker.add_local_examples(0, batch, [5.0, 1.0, 6.0, 2.0])
    batch[IMG][:] = 0  # later mutation of the batch does not leak into the buffer
    del batch
    gc.collect()
    assert images() is None  # no cached batch outlives the call
    assert all(e.raw_image.shape == (20, 30, 3) and e.image is None for e in tracker.buffer)  # resized lazily
    tracker.update([5.0, 1.0, 6.0, 2.0])
    payload = tracker.log_if_ready(100)
    assert [e["image"].shape for e in payload["entries"]] == [(5, 6, 3)] * 2
    assert all((e["image"] == 77).all() for e in payload["entries"])
    assert all(e.raw_image is None for e in tracker.buffer)


@pytest.mark.parametrize(
    "bad_image, error",
    [
        (b"not a png", "undecodable image bytes"),
        (np.full((8, 8, 3), np.nan, np.float32), "non-finite"),
        (np.zeros((8, 8, 5), np.uint8), "not an image"),
    ],
)
def test_undecodable_image_is_kept_with_placeholder_and_error(bad_image, error):
    tracker = HardExampleTracker(max_hard_examples=3, resize_hw=(6, 6))
    tracker.update([4.0, 2.0])
    tracker.add_local_examples(1, {IMG: [bad_image, np.zeros((8, 8, 3), np.uint8)], "task": ["a", "b"]}, [4.0, 2.0])
    entries = tracker.log_if_ready(100)["entries"]
    assert entries[0]["loss"] == 4.0 and error in entries[0]["image_error"]
    assert entries[0]["image"].shape == (6, 6, 3)
    assert entries[1]["image_error"] is None


def test_images_in_other_conventions_are_displayed():
    tracker = HardExampleTracker(max_hard_examples=3, resize_hw=(4, 4), image_key="image")
    chw_float = np.full((3, 8, 8), 1.0, np.float32)  # [-1, 1] convention, channels first
    ok, png = cv2.imencode(".png", np.full((8, 8, 3), 200, np.uint8))
    tracker.add_local_examples(0, {"image": [chw_float, png.tobytes()]}, [2.0, 1.0])
    tracker.update([2.0, 1.0])
    entries = tracker.log_if_ready(100)["entries"]
    assert (entries[0]["image"] == 255).all() and (entries[1]["image"] == 200).all()


def test_payload_only_at_interval_ends_and_stats_reset():
    tracker = HardExampleTracker(max_hard_examples=5, log_interval=10)
    tracker.update(np.linspace(0, 9, 10))
    tracker.add_local_examples(0, batch_of(10), np.linspace(0, 9, 10))
    assert tracker.log_if_ready(0) is None and tracker.log_if_ready(7) is None
    payload = tracker.log_if_ready(10)
    assert payload["total_samples"] == 10 and payload["quantile_threshold"] == pytest.approx(8.1)
    assert [e["loss"] for e in payload["entries"]] == [9.0, 8.0, 7.0, 6.0, 5.0]
    assert tracker.log_if_ready(20) is None  # nothing new since


def _payload(process, losses):
    return {"step": 10, "quantile": 0.9, "quantile_threshold": 0.0, "total_samples": len(losses),
            "interval_losses": np.asarray(losses, np.float32),
            "entries": [{"loss": l, "step": 10, "global_idx": i, "process_index": process, "image": None} for i, l in enumerate(losses)]}


def test_merge_is_fair_across_processes_then_by_loss():
    loud, quiet = _payload(0, [9.0, 8.0, 7.0, 6.0, 5.0]), _payload(1, [1.0, 0.5])
    merged = merge_payloads([loud, quiet, None], max_entries=6)
    assert [(e["process_index"], e["loss"]) for e in merged["entries"]] == [(0, 9.0), (0, 8.0), (0, 7.0), (0, 6.0), (1, 1.0), (1, 0.5)]
    merged = merge_payloads([loud, quiet], max_entries=4)  # fair share 2 each, although process 0 has higher losses
    assert [e["process_index"] for e in merged["entries"]] == [0, 0, 1, 1]
    assert merged["total_samples"] == 7 and merged["process_count"] == 2


def test_report_files(tmp_path):
    tracker = HardExampleTracker(max_hard_examples=3, resize_hw=(10, 12))
    tracker.update([3.0, 1.0, 2.0])
    tracker.add_local_examples(4, batch_of(3, value=50), [3.0, 1.0, 2.0])
    payload = tracker.log_if_ready(100)
    paths = write_report(payload, tmp_path)
    lines = [json.loads(line) for line in paths["jsonl"].read_text().splitlines()]
    assert [(l["rank"], l["loss"], l["prompt"]) for l in lines] == [(1, 3.0, "task 0"), (2, 2.0, "task 2"), (3, 1.0, "task 1")]
    assert lines[0]["image_shape"] == [10, 12, 3]
    sheet = cv2.imread(str(paths["png"]))
    assert sheet.shape[1] == 3 * (192 + 4), "tiny images are scaled up to a readable cell, three side by side"
    assert sheet.shape[0] >= 160 + 2 * 16, "image plus its caption lines (rank and loss, task)"
    assert caption_lines(1, {"loss": 2.5, "step": 7, "episode": "3", "frame": "41", "task": "pick the cube"}) == [
        "#1 loss 2.500 (step 7)", "episode 3, frame 41", "pick the cube"]
    assert log_to_wandb(payload, enabled=False) is False


def _run_gather(losses_by_process):
    ctx = mp.get_context("spawn")
    port, results = free_port(), ctx.Queue()
    count = len(losses_by_process)
    procs = [ctx.Process(target=gather_worker, args=(i, count, port, losses_by_process, results))
             for i in range(count)]
    for p in procs:
        p.start()
    try:
        got = dict(results.get(timeout=60) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return got


def test_gather_across_real_processes_including_one_with_nothing():
    losses = [np.array([5.0, 1.0, 7.0]), np.array([2.0, 9.0]), np.array([])]
    got = _run_gather(losses)
    assert got[1] is None and got[2] is None
    merged = got[0]
    assert not isinstance(merged, Exception), merged
    assert [(e["process_index"], e["loss"]) for e in merged["entries"]] == [(1, 9.0), (0, 7.0), (0, 5.0), (1, 2.0), (0, 1.0)]
    assert merged["total_samples"] == 5
    assert [e["global_idx"] for e in merged["entries"]] == [101, 2, 0, 100, 1]
    assert (merged["entries"][0]["image"] == 50).all() and merged["entries"][0]["prompt"] == "task of process 1"


def test_missing_process_is_reported_not_waited_for_forever():
    collective_error = None
    try:
        TcpCollective(0, 2, ("127.0.0.1", free_port()), timeout=0.5)
    except CollectiveError as e:
        collective_error = str(e)
    assert collective_error is not None and "processes [1] did not connect" in collective_error


def test_silent_peer_is_reported_by_index():
    port = free_port()
    peer = {}
    thread = threading.Thread(target=lambda: peer.setdefault("c", TcpCollective(1, 2, ("127.0.0.1", port), timeout=5)))
    thread.start()
    hub = TcpCollective(0, 2, ("127.0.0.1", port), timeout=0.5)
    thread.join()
    try:
        with pytest.raises(CollectiveError, match="process 1 did not take part in collective #1"):
            hub.gather({"entries": []})
    finally:
        hub.close()
        peer["c"].close()
