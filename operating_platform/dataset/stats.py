"""Per-episode statistics in the shape LeRobot's v2.1 `episodes_stats.jsonl` holds.

Vectors: per-dimension min/max/mean/std and count. Images: per-channel over a sample
of downsampled frames, scaled to [0, 1], shaped (3, 1, 1) — as LeRobot computes them.
"""

from __future__ import annotations

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


def image_stats(frames: np.ndarray) -> dict[str, list]:
    """`frames` is [n, h, w, 3] uint8 (a memmap is fine: only sampled frames are read)."""
    n, h, w, _ = frames.shape
    stride = downsample_stride(h, w)
    sample = np.stack([frames[i, ::stride, ::stride] for i in image_sample_indices(n)]).astype(np.float64) / 255.0
    pixels = sample.reshape(-1, 3)

    def per_channel(v: np.ndarray) -> list:
        return v.reshape(3, 1, 1).tolist()

    return {
        "min": per_channel(pixels.min(axis=0)),
        "max": per_channel(pixels.max(axis=0)),
        "mean": per_channel(pixels.mean(axis=0)),
        "std": per_channel(pixels.std(axis=0)),
        "count": [int(sample.shape[0])],
    }
