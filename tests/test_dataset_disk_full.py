"""Disk full, for real: the dataset lives on a small tmpfs that fills up mid-episode."""

from __future__ import annotations

import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest

from dataset_factory import create, expected_states_for, make_frame, record_episode

from operating_platform.dataset import LeRobotDataset
from operating_platform.dataset.spool import SpoolWriteError


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_mid_episode_loses_nothing(small_disk):
    root = small_disk / "ds"
    ds = create(root, use_async_saver=True)
    record_episode(ds, 0, 10)
    ds.save_episode()
    assert ds.wait_for_save_completion(timeout=60)
    filler = small_disk / "filler.bin"
    free = int(subprocess.run(["df", "--output=avail", "-B1", str(small_disk)], capture_output=True, text=True).stdout.split()[-1])
    filler.write_bytes(b"\0" * max(0, free - 200_000))  # leave room for ~10 frames
    recorded = 0
    with pytest.raises(SpoolWriteError) as err:
        for i in range(1000):
            ds.add_frame(make_frame(1, i), task="pick the cube")
            recorded += 1
    message = str(err.value)
    assert "No space left on device" in message and str(root / ".spool") in message
    assert f"the {recorded} frames before it are intact" in message
    assert recorded > 0
    filler.unlink()  # the operator frees space; the frames recorded so far are saved intact
    ds.add_frame(make_frame(1, recorded), task="pick the cube")
    ds.save_episode()
    ds.close()
    assert LeRobotDataset.open(root, use_async_saver=False, vcodec="libx264").num_episodes == 2
    got = np.array(pq.read_table(root / "data/chunk-000/episode_000001.parquet").column("observation.state").to_pylist())
    np.testing.assert_array_equal(got, expected_states_for(1, recorded + 1))
