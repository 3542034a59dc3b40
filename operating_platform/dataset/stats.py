"""Per-episode statistics in the shape LeRobot's v2.1 `episodes_stats.jsonl` holds.

Vectors: per-dimension min/max/mean/std and count. Images: per-channel over a sample
of downsampled frames, scaled to [0, 1], shaped (3, 1, 1) — as LeRobot computes them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

MIN_IMAGE_SAMPLES = 100
MAX_IMAGE_SAMPLES = 10_000
IMAGE_STATS_TARGET_SIZE = 150


def vector_stats(values: np.ndarray) -> dict[str, list]:
    """`values` is [n] or [n, d]; scalars become shape [1] as LeRobot stores them."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    return {
        "min": arr.min(axis=0).tolist(),
        "max": arr.max(axis=0).tolist(),
        "mean": arr.mean(axis=0).tolist(),
        "std": arr.std(axis=0).tolist(),
        "count": [int(arr.shape[0])],
    }


def image_sample_indices(num_frames: int) -> np.ndarray:
    """Evenly spaced frames, more for longer episodes (LeRobot's n**0.75 rule, clamped)."""
    if num_frames <= MIN_IMAGE_SAMPLES:
        return np.arange(num_frames)
    count = int(min(max(num_frames**0.75, MIN_IMAGE_SAMPLES), MAX_IMAGE_SAMPLES, num_frames))
    return np.round(np.linspace(0, num_frames - 1, count)).astype(int)


def downsample_stride(height: int, width: int) -> int:
    return max(1, max(height, width) // IMAGE_STATS_TARGET_SIZE)


def image_stats(read_frame: Callable[[int], np.ndarray], num_frames: int) -> dict[str, list]:
    """`read_frame(i)` gives frame i as (h, w, 3) uint8; only the sampled frames are read,
    one at a time, so an episode's pixels are never all in memory."""
    indices = image_sample_indices(num_frames)
    sums = np.zeros(3)
    sq_sums = np.zeros(3)
    mins = np.full(3, np.inf)
    maxs = np.full(3, -np.inf)
    pixels = 0
    for i in indices:
        frame = read_frame(int(i))
        stride = downsample_stride(*frame.shape[:2])
        sample = frame[::stride, ::stride].reshape(-1, 3).astype(np.float64) / 255.0
        sums += sample.sum(axis=0)
        sq_sums += np.square(sample).sum(axis=0)
        mins = np.minimum(mins, sample.min(axis=0))
        maxs = np.maximum(maxs, sample.max(axis=0))
        pixels += sample.shape[0]
    mean = sums / pixels
    std = np.sqrt(np.maximum(sq_sums / pixels - np.square(mean), 0.0))

    def per_channel(v: np.ndarray) -> list:
        return v.reshape(3, 1, 1).tolist()

    return {
        "min": per_channel(mins),
        "max": per_channel(maxs),
        "mean": per_channel(mean),
        "std": per_channel(std),
        "count": [int(len(indices))],
    }


def aggregate_stats(stats_list: list[dict[str, dict]]) -> dict[str, dict[str, list]]:
    """Dataset stats from per-episode (or already aggregated) stats: min of mins, max of
    maxes, count-weighted mean, pooled std — LeRobot's meta/stats.json rule."""
    out: dict[str, dict[str, list]] = {}
    for key in dict.fromkeys(k for stats in stats_list for k in stats):
        parts = [s[key] for s in stats_list if key in s]
        means = np.stack([np.asarray(p["mean"], np.float64) for p in parts])
        stds = np.stack([np.asarray(p["std"], np.float64) for p in parts])
        counts = np.asarray([np.asarray(p["count"]).reshape(-1)[0] for p in parts], np.float64)
        weights = counts.reshape((-1,) + (1,) * (means.ndim - 1))
        total = counts.sum()
        mean = (means * weights).sum(axis=0) / total
        variance = ((np.square(stds) + np.square(means - mean)) * weights).sum(axis=0) / total
        out[key] = {
            "min": np.min(np.stack([np.asarray(p["min"], np.float64) for p in parts]), axis=0).tolist(),
            "max": np.max(np.stack([np.asarray(p["max"], np.float64) for p in parts]), axis=0).tolist(),
            "mean": mean.tolist(),
            "std": np.sqrt(variance).tolist(),
            "count": [int(total)],
        }
    return out
