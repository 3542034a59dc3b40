"""Image stats kept while a live encode reads the spool equal the stats read back from it,
and spools committed by older versions (float sums) are still recognised as committed."""

from __future__ import annotations

import numpy as np
import pytest

from operating_platform.dataset.spool import EpisodeBuffer, SpoolLayout
from operating_platform.dataset.stats import (
    ImageMoments, downsample_stride, image_sample_indices, image_stats, same_image_stats,
)
from operating_platform.dataset.video import EncoderThread, VideoEncoding, VideoFrameError, decode_video_frames

KEY = "observation.images.top"
X264 = VideoEncoding(vcodec="libx264", preset="ultrafast")


def _float_sum_stats(frames: list[np.ndarray]) -> dict:
    """How image stats were computed before (float64 sums of the scaled sample), as a reference."""
    idx = image_sample_indices(len(frames))
    samples = []
    for i in idx:
        s = downsample_stride(*frames[i].shape[:2])
        samples.append(frames[i][::s, ::s].reshape(-1, 3).astype(np.float64) / 255.0)
    x = np.concatenate(samples)
    mean = x.sum(0) / len(x)
    std = np.sqrt(np.maximum(np.square(x).sum(0) / len(x) - mean**2, 0))
    shape = lambda v: np.asarray(v).reshape(3, 1, 1).tolist()  # noqa: E731
    return {"min": shape(x.min(0)), "max": shape(x.max(0)), "mean": shape(mean), "std": shape(std), "count": [len(idx)]}


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("n", [1, 7, 150])
def test_moments_kept_on_the_way_give_the_stats_read_back(n):
    frames = _frames(n)
    moments = ImageMoments()
    for f in frames:
        moments.add(f)
    assert moments.stats(n) == image_stats(lambda i: frames[i], n)
    with pytest.raises(ValueError):
        moments.stats(n + 1)


def test_stats_match_the_float_sums_of_older_versions():
    for frames in (_frames(150, 1), [np.full((48, 64, 3), v, np.uint8) for v in (3, 200)] * 20):
        ours, before = image_stats(lambda i: frames[i], len(frames)), _float_sum_stats(frames)
        for stat in ("min", "max", "mean", "std"):
            np.testing.assert_allclose(ours[stat], before[stat], rtol=1e-9, atol=1e-6)
        assert same_image_stats(ours, before)


def test_same_image_stats_tells_one_changed_pixel_apart():
    frames = _frames(150, 2)
    changed = [f.copy() for f in frames]
    changed[0][0, 0, 0] ^= 1  # frame 0 is always sampled, pixel (0, 0) always kept by the downsampling
    a, b = image_stats(lambda i: frames[i], 150), image_stats(lambda i: changed[i], 150)
    assert not same_image_stats(a, b)
    assert not same_image_stats(a, None)


def _buffer(tmp_path) -> EpisodeBuffer:
    layout = SpoolLayout(vector_shapes={"observation.state": 2}, camera_shapes={KEY: (48, 64, 3)})
    return EpisodeBuffer.create(tmp_path / "spool", layout, fps=30)


def test_live_encode_keeps_the_stats_of_every_frame(tmp_path):
    buffer, frames = _buffer(tmp_path), _frames(40, 3)
    encoder = EncoderThread("test")
    try:
        job = encoder.submit(buffer.follow(KEY), tmp_path / "top.mp4", 30, X264)
        for f in frames:
            buffer.add_frame({"observation.state": np.zeros(2, np.float32), KEY: f}, "task")
        buffer.end()
        assert job.finish(timeout=60) and job.frames_encoded == 40
    finally:
        encoder.stop()
    assert len(decode_video_frames(tmp_path / "top.mp4")) == 40
    assert len(buffer.image_moments[KEY]) == 40
    assert buffer.image_stats(KEY) == image_stats(lambda i: frames[i], 40)
    buffer.image_moments.clear()  # a reopened spool: read back, same values
    assert buffer.image_stats(KEY) == image_stats(lambda i: frames[i], 40)


def test_discarded_episode_leaves_no_video(tmp_path):
    buffer = _buffer(tmp_path)
    encoder = EncoderThread("test")
    try:
        job = encoder.submit(buffer.follow(KEY), tmp_path / "top.mp4", 30, X264)
        for f in _frames(5, 4):
            buffer.add_frame({"observation.state": np.zeros(2, np.float32), KEY: f}, "task")
        buffer.discard()
        assert job.finish(timeout=60) is False
    finally:
        encoder.stop()
    assert job.error is not None  # the spool is gone, or follow() said it was discarded
    assert not (tmp_path / "top.mp4").exists()


def test_unreadable_video_is_one_error_naming_the_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(VideoFrameError, match="bad.mp4: cannot open video"):
        decode_video_frames(bad)
