"""Free-space estimate and the pre-recording check, against a real small tmpfs."""

from __future__ import annotations

import pytest

from dataset_factory import CAMERAS, create, record_episode
from storage_faults import fill_disk, tmpfs

from operating_platform.dataset import space

VGA = {"top": (480, 640), "wrist": (480, 640)}


def test_estimate_counts_the_raw_spool_and_a_conservative_encoding_for_a_new_dataset():
    est = space.estimate(VGA, vector_floats=12, vcodec="libsvtav1")
    assert est.raw_bytes_per_frame == 2 * 640 * 480 * 3 + 12 * 4 + 4
    assert est.encoded_bytes_per_frame == pytest.approx(2 * 640 * 480 * 0.3 / 8 + 17 * 8)
    assert "assumed 0.3 bits/pixel for libsvtav1" == est.how
    assert est.episode_peak_bytes(600) == int(600 * (est.raw_bytes_per_frame + est.encoded_bytes_per_frame))


def test_estimate_uses_the_measured_size_of_committed_episodes(tmp_path):
    ds = create(tmp_path / "ds")
    record_episode(ds, 0, 30)
    ds.save_episode()
    ds.close()
    on_disk = sum(p.stat().st_size for sub in ("data", "videos") for p in (tmp_path / "ds" / sub).rglob("*") if p.is_file())
    est = space.estimate(CAMERAS, 12, "libx264", tmp_path / "ds")
    assert est.encoded_bytes_per_frame == pytest.approx(on_disk / 30)
    assert est.how == "measured over 1 committed episode(s)"


def test_minutes_left_reserves_one_episode_and_counts_what_stays():
    est = space.SpaceEstimate(raw_bytes_per_frame=1000, encoded_bytes_per_frame=100, how="test")
    assert est.minutes_left(free=1100 * 60 + 100 * 30 * 60 * 2, fps=30, reserve_frames=60) == pytest.approx(2.0)
    assert est.minutes_left(free=10, fps=30, reserve_frames=60) == 0.0


def test_check_free_space_refuses_with_one_line_and_passes_when_room(tmp_path):
    with tmpfs(tmp_path / "disk", "20m") as disk:
        root = disk / "new_dataset"  # not created yet: the check looks at the filesystem it will be on
        est = space.check_free_space(root, {"top": (48, 64)}, fps=30, episode_time_s=5, vcodec="libx264")
        assert est.raw_bytes_per_frame == 48 * 64 * 3 + 12 * 4 + 4
        with pytest.raises(space.InsufficientSpaceError) as err:
            space.check_free_space(root, VGA, fps=30, episode_time_s=20, vcodec="libsvtav1")
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith(f"not enough free space at {root}: ")
        assert "needed for 3 episodes of 20 s at 30 fps with 2 camera(s)" in message
        fill_disk(disk, 100_000)
        with pytest.raises(space.InsufficientSpaceError):
            space.check_free_space(root, {"top": (48, 64)}, fps=30, episode_time_s=5, vcodec="libx264")


def test_status_reports_free_space_minutes_left_and_warns_when_low(tmp_path, caplog):
    with tmpfs(tmp_path / "disk", "16m") as disk:
        ds = create(disk / "ds")
        record_episode(ds, 0, 30)
        ds.save_episode()
        status = ds.get_async_save_status()
        assert status["free_bytes"] == space.free_bytes(disk)
        assert status["minutes_left"] > 0 and status["space_low"] is False
        fill_disk(disk, 500_000)
        with caplog.at_level("WARNING"):
            status = ds.get_async_save_status()
            ds.get_async_save_status()
        assert status["space_low"] is True and status["minutes_left"] < space.LOW_SPACE_MINUTES
        warnings = [r.getMessage() for r in caplog.records if "low on disk space" in r.getMessage()]
        assert len(warnings) == 1 and str(disk / "ds") in warnings[0]
        ds.close()
