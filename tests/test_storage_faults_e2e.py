"""Storage faults through the real dataflow: `dora run` with the dataset on a small real tmpfs, under load.

While episodes are being recorded, a ballast file fills the disk, or the metadata folder the
episodes are committed into becomes a read-only bind mount, or loses its write permission (the
dataflow runs without capabilities). That folder is meta/ for v2.1 and the hidden store's
.episodes/meta for v3.0 (episodes are committed there and packed at close). Asserted:
the run fails loudly (non-zero exit, an error naming the path), and once the fault is undone
every frame the recorder sent is either committed or in the spool as a named recoverable episode.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e_helpers import REPO, assert_valid, copy_dataflow
from storage_faults import fill_disk, read_only, tmpfs, without_capabilities

from operating_platform.core.launcher import dora_binary
from operating_platform.dataset import LeRobotDataset
from operating_platform.dataset import format as fmt
from operating_platform.dataset.spool import load_spooled_episode, spooled_episode_dirs
from operating_platform.dataset.v30.pack import store_root

pytestmark = pytest.mark.slow


def _busy_loops(n: int = 2) -> list[subprocess.Popen]:
    """Load beside the dataflow: processes that share nothing with the test (no lock to starve on)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


@contextlib.contextmanager
def _fault(kind: str, disk: Path, root: Path):
    """Apply a storage fault to the running recording (`root` is where episodes are committed);
    undo it (space freed, permission restored) on exit."""
    if kind == "disk_full":
        ballast = fill_disk(disk, 0)
        try:
            yield
        finally:
            ballast.unlink()
    elif kind == "meta_read_only":
        with read_only(root / "meta"):
            yield
    else:  # write permission removed; the dataflow runs without capabilities, so root obeys it
        (root / "meta").chmod(0o555)
        try:
            yield
        finally:
            (root / "meta").chmod(0o755)


FAULT_TEXT = {"disk_full": "No space left on device", "meta_read_only": "Read-only file system",
              "meta_no_permission": "Permission denied"}


@pytest.mark.timeout(900)  # a loaded machine can take minutes to start dora
@pytest.mark.parametrize("kind", sorted(FAULT_TEXT))
@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
def test_storage_fault_mid_run_stops_recording_and_loses_no_frame(workdir, kind, version):
    copy_dataflow(workdir)
    load = _busy_loops()
    try:
        with tmpfs(workdir / "disk", "12m") as disk:
            root = disk / "ds"
            committing_root = store_root(root) if version == "v3.0" else root  # where episodes are committed
            env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
            cmd = [dora_binary(), "run", "dataflow.yml"]
            for k, v in {"DATASET_ROOT": str(root), "NUM_EPISODES": "6", "EPISODE_TIME_S": "2", "RESET_TIME_S": "0.3",
                         "CAMERA_WIDTH": "64", "CAMERA_HEIGHT": "48", "VCODEC": "libx264",
                         "ASYNC_SAVE_MAX_RETRIES": "1", "DATASET_VERSION": version}.items():
                cmd += ["--env", f"{k}={v}"]
            if kind == "meta_no_permission":
                cmd = without_capabilities(cmd)
            proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, start_new_session=True)
            try:
                deadline, first_committed = time.monotonic() + 240, False
                while time.monotonic() < deadline and proc.poll() is None and not first_committed:
                    info = committing_root / fmt.INFO_PATH
                    first_committed = info.exists() and fmt.read_json(info)["total_episodes"] >= 1
                    time.sleep(0.05)
                # The fault must come mid-run (a disk full before recording starts is the preflight's job).
                assert first_committed and proc.poll() is None, "the first episode was not committed while running"
                time.sleep(0.5)  # into the next episode
                with _fault(kind, disk, committing_root):
                    out, _ = proc.communicate(timeout=150)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            assert proc.returncode != 0, out[-4000:]
            saver_log = "".join(p.read_text() for p in (workdir / "out").glob("*/log_saver.jsonl"))
            received, gaps, rejected = re.search(
                r"\[saver\] frames received (\d+), committed \d+,[^;]*; sequence gaps (\d+),.*?rejected (\d+)", saver_log).groups()
            assert (gaps, rejected) == ("0", "0"), saver_log[-3000:]  # every frame the recorder sent was taken
            sent = int(received)
            errors = [line for line in out.splitlines() if FAULT_TEXT[kind] in line]
            assert errors, out[-4000:]
            assert str(root) in errors[0]
            if kind == "disk_full":
                assert "free is needed at" in errors[0]
            assert "save the episode" not in out
            assert "completed=6 failed=0" not in out

            ds = LeRobotDataset.open(root, use_async_saver=False, vcodec="libx264")  # the fault is gone
            committed = ds.num_frames
            assert ds.saving_stopped is None
            spooled = sum(load_spooled_episode(p).num_frames for p in spooled_episode_dirs(committing_root / fmt.SPOOL_DIR))
            ds.close()
            print(f"{version} {kind}: frames recorded {sent}, committed {committed}, recoverable {spooled}")
            assert sent == committed + spooled, out[-4000:]
            assert committed >= 60
            script = REPO / "scripts" / "recover_episodes.py"
            rec = subprocess.run([sys.executable, str(script), str(root), "--include-partial", "--vcodec", "libx264"],
                                 capture_output=True, text=True, timeout=300)
            assert rec.returncode == 0, rec.stdout + rec.stderr
            assert assert_valid(root)["total_frames"] == sent
    finally:
        for p in load:
            p.kill()
            p.wait()
