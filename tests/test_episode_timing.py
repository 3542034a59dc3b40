"""Honest timing: which episodes are slower than real time, and the per-episode side file that
tools read and LeRobot's reader ignores."""

import numpy as np
import pytest

from operating_platform.dataflow.messages import EpisodeLayout, encode_episode_control, encode_episode_frame
from operating_platform.dataflow.saver import Saver, SaverConfig
from operating_platform.dataflow.timing import EpisodeClock, EpisodeTiming, read_timing
from operating_platform.hardware.base import SO101_JOINT_NAMES

MS = 1_000_000


def clocked(fps, stamps_ms):
    clock = EpisodeClock(fps)
    for t in stamps_ms:
        clock.sample(int(t * MS))
    return clock.timing()


def test_real_time_sampling_with_jitter_is_not_slow():
    timing = clocked(30, [i * 1000 / 30 + (5 if i % 2 else 0) for i in range(90)])
    assert not timing.slow and timing.frames == 90 and timing.duration_s == pytest.approx(3.0, abs=0.01)


def test_one_gap_over_two_periods_makes_the_episode_slow():
    stamps = [i * 100 for i in range(10)]
    stamps[5:] = [t + 110 for t in stamps[5:]]  # one gap of 210 ms at 10 fps
    timing = clocked(10, stamps)
    assert timing.slow and timing.sample_gap_max_ms == 210
    assert "10 frames took 1.11 s (stored as 1.00 s at 10 fps), longest sample gap 210 ms" == timing.describe()


def test_a_uniformly_slow_episode_is_slow_by_its_duration():
    timing = clocked(30, [i * 1000 / 30 * 1.06 for i in range(90)])  # 6 % slow, no single long gap
    assert timing.sample_gap_max_ms < 2 * 1000 / 30 and timing.slow


def test_a_single_frame_episode_is_never_slow():
    assert not clocked(30, [0]).slow


def test_lerobot_reads_a_dataset_with_the_timing_side_file(tmp_path, monkeypatch):
    pytest.importorskip("lerobot")
    import lerobot_env

    layout = EpisodeLayout(list(SO101_JOINT_NAMES), {"top": (48, 64)})
    root = tmp_path / "local" / "timed"
    saver = Saver(SaverConfig(root=str(root), vcodec="libx264", dataset_version="v2.1").open_dataset, lambda *a: None,
                  say=lambda s: None)  # LeRobot 0.3 (v2.1) here; the v3.0 e2e loads with 0.4 beside the same file
    seq = iter(range(1, 100))
    saver.on_episode(*encode_episode_control("begin", next(seq), 0, "t", layout))
    for i in range(5):
        saver.on_episode(*encode_episode_frame(next(seq), 0, i, layout, np.zeros(6), np.zeros(6),
                                               {"top": np.full((48, 64, 3), 40 * i, np.uint8)}, 0))
    timing = EpisodeTiming(frames=5, fps=30, duration_s=0.4, sample_gap_max_ms=120.0)
    saver.on_episode(*encode_episode_control("end", next(seq), 0, timing=timing.to_metadata()))
    saver.on_episode(*encode_episode_control("finish", next(seq), 1))
    assert read_timing(root)[0]["slow"] and saver.errors == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    ds = lerobot_env.import_lerobot_dataset()("local/timed", root=root, video_backend="pyav")
    assert ds.num_episodes == 1 and len(ds) == 5 and int(ds[4]["frame_index"]) == 4
