"""Per-episode statistics in the shape LeRobot's v2.1 `episodes_stats.jsonl` holds.

Vectors: per-dimension min/max/mean/std and count. Images: per-channel over a sample
of downsampled frames, scaled to [0, 1], shaped (3, 1, 1) — as LeRobot computes them.
"""

from __future__ import annotations

import math
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


_LEVELS = np.arange(256, dtype=np.int64)


def frame_moments(frame: np.ndarray) -> np.ndarray:
    """Per channel of the downsampled (h, w, 3) uint8 frame: pixel count, sum, sum of squares,
    min, max — exact integers, from a histogram (a few times cheaper than float sums, so
    every frame of a recording can afford it)."""
    stride = downsample_stride(*frame.shape[:2])
    sample = frame[::stride, ::stride]
    out = np.empty((3, 5), dtype=np.int64)
    for c in range(3):
        hist = np.bincount(sample[..., c].ravel(), minlength=256)
        seen = np.flatnonzero(hist)
        out[c] = hist.sum(), hist @ _LEVELS, hist @ (_LEVELS * _LEVELS), seen[0], seen[-1]
    return out


def _stats_of_moments(moments: list[np.ndarray]) -> dict[str, list]:
    """Image stats, scaled to [0, 1], of the frames whose moments are given. Python integers
    keep the sums exact; each value is rounded once, in the final division."""
    total = np.sum(moments, axis=0)  # int64 (3, 5); far from overflow at 10,000 sampled frames
    means, stds = [], []
    for c in range(3):
        pixels, s, sq = (int(v) for v in total[c, :3])
        means.append(s / (255 * pixels))
        stds.append(math.sqrt((pixels * sq - s * s) / (255 * 255 * pixels * pixels)))
    mins = np.min(np.asarray(moments)[:, :, 3], axis=0) / 255.0
    maxs = np.max(np.asarray(moments)[:, :, 4], axis=0) / 255.0

    def per_channel(v) -> list:
        return np.asarray(v, dtype=np.float64).reshape(3, 1, 1).tolist()

    return {
        "min": per_channel(mins),
        "max": per_channel(maxs),
        "mean": per_channel(means),
        "std": per_channel(stds),
        "count": [len(moments)],
    }


def image_stats(read_frame: Callable[[int], np.ndarray], num_frames: int) -> dict[str, list]:
    """`read_frame(i)` gives frame i as (h, w, 3) uint8; only the sampled frames are read,
    one at a time, so an episode's pixels are never all in memory."""
    return _stats_of_moments([frame_moments(read_frame(int(i))) for i in image_sample_indices(num_frames)])


class ImageMoments:
    """The moments of one camera's frames as a recording goes, so the episode's image stats
    need no frame read back once its length (hence the sample) is known."""

    def __init__(self):
        self._moments: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._moments)

    def add(self, frame: np.ndarray) -> None:
        self._moments.append(frame_moments(frame))

    def stats(self, num_frames: int) -> dict[str, list]:
        """The stats `image_stats` gives for the first `num_frames` frames seen."""
        if num_frames > len(self._moments):
            raise ValueError(f"image stats of {num_frames} frames asked, {len(self._moments)} seen")
        return _stats_of_moments([self._moments[int(i)] for i in image_sample_indices(num_frames)])


def same_image_stats(a: dict, b: dict) -> bool:
    """Equal image stats up to float rounding: stats written before they were computed from
    exact integer sums (a spool an older version left) differ from today's in the last digits,
    in the variance (a std near 0 magnifies them), far less than two recordings differ by."""
    try:
        if a["count"] != b["count"]:
            return False
        pairs = [(np.asarray(a[k], np.float64), np.asarray(b[k], np.float64), 1e-12) for k in ("min", "max", "mean")]
        pairs.append((np.square(np.asarray(a["std"], np.float64)), np.square(np.asarray(b["std"], np.float64)), 1e-10))
        return all(x.shape == y.shape and np.allclose(x, y, rtol=1e-9, atol=atol) for x, y, atol in pairs)
    except (KeyError, TypeError, ValueError):
        return False


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
