"""A storage fault that cannot be set up is a failure as root (CI runs as root), a skip otherwise."""

import os

import pytest
from storage_faults import tmpfs


def test_a_tmpfs_that_cannot_be_mounted_fails_as_root_and_skips_otherwise(tmp_path):
    expected = pytest.fail.Exception if os.geteuid() == 0 else pytest.skip.Exception
    with pytest.raises(expected, match="cannot mount a tmpfs"):
        with tmpfs(tmp_path / "disk", "not-a-size"):
            pass


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_as_root_the_tmpfs_is_real_and_sized(tmp_path):
    with tmpfs(tmp_path / "disk", "4m") as disk:
        st = os.statvfs(disk)
        assert st.f_blocks * st.f_frsize == 4 * 1024 * 1024
        (disk / "f").write_bytes(b"x")
    assert not (tmp_path / "disk" / "f").exists()  # unmounted afterwards
