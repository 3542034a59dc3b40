"""dataset/stats.py on its own, against LeRobot's definitions computed here with plain numpy."""

import numpy as np
import pytest

from operating_platform.dataset.stats import aggregate_stats, downsample_stride, image_sample_indices, image_stats, vector_stats


def test_vector_stats_per_dimension_and_scalars_as_shape_1():
    values = np.array([[1, 10], [3, 20], [5, 60]], np.float32)
    stats = vector_stats(values)
    assert stats["min"] == [1, 10] and stats["max"] == [5, 60] and stats["count"] == [3]
    assert stats["mean"] == pytest.approx([3, 30]) and stats["std"] == pytest.approx(values.std(axis=0))
    assert vector_stats(np.array([2.0, 4.0])) == {"min": [2.0], "max": [4.0], "mean": [3.0], "std": [1.0], "count": [2]}


@pytest.mark.parametrize("num_frames, expected", [(1, 1), (100, 100), (101, 100), (10_000, 1000), (10**6, 10_000)])
def test_image_samples_follow_the_n_to_the_three_quarters_rule(num_frames, expected):
    indices = image_sample_indices(num_frames)
    assert len(indices) == expected and indices[0] == 0 and indices[-1] == num_frames - 1
    assert np.all(np.diff(indices) > 0)


def test_image_stats_match_numpy_over_the_sampled_downsampled_frames():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(130, 300, 320, 3), dtype=np.uint8)
    read = []
    stats = image_stats(lambda i: read.append(i) or frames[i], len(frames))
    indices = image_sample_indices(len(frames))
    assert sorted(set(read)) == indices.tolist()  # only the sampled frames are read
    stride = downsample_stride(300, 320)
    assert stride == 2
    pixels = frames[indices][:, ::stride, ::stride].reshape(-1, 3).astype(np.float64) / 255
    for name, value in (("min", pixels.min(0)), ("max", pixels.max(0)), ("mean", pixels.mean(0)), ("std", pixels.std(0))):
        got = np.array(stats[name])
        assert got.shape == (3, 1, 1)
        assert got.reshape(3) == pytest.approx(value, abs=1e-9), name
    assert stats["count"] == [len(indices)]


def test_aggregate_is_count_weighted_with_pooled_std():
    a, b = np.array([[0.0], [2.0]]), np.array([[4.0], [6.0], [8.0], [10.0]])
    merged = aggregate_stats([{"x": vector_stats(a)}, {"x": vector_stats(b), "y": vector_stats(np.ones(3))}])
    everything = np.concatenate([a, b])
    assert merged["x"]["mean"] == pytest.approx(everything.mean(0)) and merged["x"]["std"] == pytest.approx(everything.std(0))
    assert merged["x"]["min"] == [0.0] and merged["x"]["max"] == [10.0] and merged["x"]["count"] == [6]
    assert merged["y"]["count"] == [3]  # a feature of some episodes only
