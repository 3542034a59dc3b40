"""Nothing lost, end to end: real `dora run dataflow.yml` beside CPU busy loops (a loaded 2-core
machine hides nothing), with the faults met in the field: Ctrl-C / SIGTERM / `dora stop` mid-episode,
the saver or a camera killed with SIGKILL, a camera too large for dora's transport, and an episode
stream with a duplicated and two swapped messages. Every test ends in bounded time and leaves no
process behind (the `workdir` fixture checks)."""

import ast
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from e2e_helpers import REPO, assert_valid, load_repo_module

from operating_platform.core.launcher import DoraLauncher
from operating_platform.dataset.format import SPOOL_DIR
from operating_platform.dataset.v30.layout import STORE_DIR

runs = load_repo_module("benchmarks/loss_free_runs.py")  # the benchmark's runs, asserted on here
RECORDER_LINE, SAVER_LINE, busy_loops, figures, finish, prepare, start_dora_run = (
    runs.RECORDER_LINE, runs.SAVER_LINE, runs.busy_loops, runs.figures, runs.finish, runs.prepare, runs.start_dora_run)

pytestmark = pytest.mark.slow
ROOT = Path("data") / "sim_demo"
LONG = {"NUM_EPISODES": "1", "EPISODE_TIME_S": "60", "RESET_TIME_S": "0"}
SPOOL_RECORD_BYTES = (6 + 6) * 4 + 4  # one frame's vectors.bin record: state, action (float32), task id


class DoraRun:
    """`dora run` in a workdir, its output read as it comes (so the test can wait for a line)."""

    def __init__(self, workdir: Path, env: dict[str, str], dataflow: str = "dataflow.yml"):
        self.workdir = workdir
        self.proc = start_dora_run(workdir, dataflow, env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def out(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := re.search(pattern, self.out):
                return found
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} within {timeout} s:\n{self.out[-4000:]}")

    def wait_frames(self, n: int) -> None:
        wait_spooled(self.workdir, n, lambda: self.out)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def finish(self, timeout: float = 120) -> int:
        try:
            self.proc.wait(timeout=timeout)
        except Exception:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)  # bounded too: a hung test costs CI its run
        self._reader.join(timeout=10)
        return self.proc.returncode


@pytest.fixture
def start(workdir, request):
    """start(env, dataflow=...) -> a DoraRun in workdir, killed at the end of the test whatever happened.

    Each run's own figures are printed (`pytest -s` shows them): what the recorder recorded and
    what the saver committed, as the fault left them.
    """
    runs = []

    def _start(env: dict[str, str], dataflow: str = "dataflow.yml") -> DoraRun:
        runs.append(DoraRun(workdir, env, dataflow))
        return runs[-1]

    yield _start
    for run in runs:
        run.kill()
        recorder, saver = RECORDER_LINE.findall(run.out)[-1:], SAVER_LINE.findall(run.out)[-1:]
        print(f"\nFIGURES {request.node.name}: exit {run.proc.returncode}; recorder (recorded, handed over, "
              f"committed) {recorder or 'no summary'}; saver (received, committed) {saver or 'no summary'}")


def spooled(root: Path, pattern: str = "*") -> list[Path]:
    """Entries of the dataset's spool: <root>/.spool (v2.1) or <root>/.episodes/.spool (v3.0's store)."""
    return [p for spool in (root / SPOOL_DIR, root / STORE_DIR / SPOOL_DIR) for p in spool.glob(pattern)]


def wait_spooled(workdir: Path, n: int, output=lambda: "", timeout: float = 120) -> None:
    """Until the saver has spooled `n` frames of the episode in progress."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sizes = [p.stat().st_size for p in spooled(workdir / ROOT, "*/vectors.bin")]
        if sizes and max(sizes) >= n * SPOOL_RECORD_BYTES:
            return
        time.sleep(0.2)
    raise AssertionError(f"{n} frames were not recorded within {timeout} s:\n{output()[-4000:]}")


def node_pid(workdir: Path, script: str, env_entry: str | None = None) -> int:
    """The pid of the node running nodes/`script` for this workdir (named in its command line or
    environment), optionally with env `env_entry`."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        ours = str(workdir).encode() in cmdline + environ
        if ours and f"nodes/{script}".encode() in cmdline and (env_entry is None or env_entry.encode() in environ.split(b"\0")):
            return int(pid)
    raise AssertionError(f"no process runs {script} for {workdir}")


def recover_and_validate(workdir: Path, figures: str) -> dict:
    """The recover command the error names, then the validator; the dataset's info (its figures printed)."""
    recovery = subprocess.run([sys.executable, str(REPO / "scripts" / "recover_episodes.py"), str(workdir / ROOT),
                               "--include-partial"], capture_output=True, text=True, timeout=120)
    assert recovery.returncode == 0, recovery.stdout + recovery.stderr
    info = assert_valid(workdir / ROOT)
    print(f"FIGURES {figures}, committed after recovery {info['total_frames']}")
    return info


def committed(out: str) -> tuple[int, int]:
    """(frames the saver received, frames it committed) from its summary line."""
    received, done = SAVER_LINE.findall(out)[-1]
    return int(received), int(done)


def test_clean_runs_under_load_commit_every_recorded_frame(workdir):
    with busy_loops(3, marker=str(workdir)):
        for run in range(2):
            wd = workdir / f"run{run}"
            wd.mkdir()
            prepare(wd)
            proc = start_dora_run(wd, env={"EPISODE_TIME_S": "2", "RESET_TIME_S": "0.3"})
            out = finish(proc, timeout=240)
            f = figures(out, proc.returncode, wd / ROOT)
            assert f.lossless and f.recorded == 3 * 60, out[-4000:]
            assert_valid(wd / ROOT)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_dora_run_mid_episode_saves_the_episode_in_progress(workdir, sig, start):
    prepare(workdir)
    with busy_loops(2, marker=str(workdir)):
        run = start(LONG)
        run.wait_frames(60)
        run.proc.send_signal(sig)
        code = run.finish()
    received, done = committed(run.out)
    recorded = int(RECORDER_LINE.findall(run.out)[-1][0])
    assert code == 0 and received > 0 and recorded == received == done, run.out[-4000:]
    assert "[saver] stop: saving episode 0 in progress" in run.out
    info = assert_valid(workdir / ROOT)
    assert info["total_episodes"] == 1 and info["total_frames"] == done


def test_dora_stop_mid_episode_saves_the_episode_in_progress(workdir):
    dataflow = prepare(workdir)
    launcher = DoraLauncher(workdir)
    try:
        launcher.up()
        launcher.start(dataflow, "stop-e2e", env=LONG)
        wait_spooled(workdir, 60)
        launcher.stop()
    finally:
        launcher.close()
    info = assert_valid(workdir / ROOT)
    assert info["total_episodes"] == 1 and info["total_frames"] > 0
    assert not [p for p in spooled(workdir / ROOT) if p.is_dir()], "nothing left uncommitted"


def test_a_killed_saver_stops_the_session_at_once_with_one_error(workdir, start):
    prepare(workdir)
    with busy_loops(2, marker=str(workdir)):
        run = start({"NUM_EPISODES": "3", "EPISODE_TIME_S": "2", "RESET_TIME_S": "0"})
        run.wait_for(r"Queued episode 0")
        os.kill(node_pid(workdir, "saver.py"), signal.SIGKILL)
        killed = time.monotonic()
        code = run.finish()
        took = time.monotonic() - killed
    assert code != 0 and took < 30, run.out[-4000:]
    errors = set(re.findall(r"\[recorder\] ✗ (.*)", run.out))  # dora repeats a failed node's stderr at the end
    assert len(errors) == 1, run.out[-4000:]
    [error] = errors
    recorded, taken = map(int, re.search(r"(\d+) frames recorded, (\d+) taken by the saver", error).groups())
    assert error.startswith("the saver exited") and f"recover_episodes.py {workdir / ROOT} --include-partial" in error
    assert "Queued episode 1" not in run.out, "no episode is 'saved' after the saver died"
    info = recover_and_validate(workdir, f"killed saver: recorded {recorded}, taken by the saver {taken}")
    assert info["total_frames"] == recorded, "what the saver took and the recorder's note are recovered: every frame"


def test_a_killed_camera_ends_the_session_and_the_frames_recorded_are_saved(workdir, start):
    prepare(workdir)
    with busy_loops(2, marker=str(workdir)):
        run = start(LONG)
        run.wait_frames(60)
        os.kill(node_pid(workdir, "camera.py", "CAMERA_NAME=top"), signal.SIGKILL)
        killed = time.monotonic()
        code = run.finish()
        took = time.monotonic() - killed
    assert code != 0 and took < 30, run.out[-4000:]
    errors = set(re.findall(r"\[recorder\] ✗ (.*)", run.out))
    assert len(errors) == 1 and "camera_top" in min(errors) and "the frames recorded so far are saved" in min(errors)
    recorded, handed, done = map(int, RECORDER_LINE.findall(run.out)[-1])
    assert recorded > 0 and recorded == handed == done, run.out[-4000:]
    info = assert_valid(workdir / ROOT)
    assert info["total_frames"] == recorded


def test_a_camera_too_large_for_dora_is_refused_before_recording(workdir, start):
    prepare(workdir)
    run = start({**LONG, "CAMERA_WIDTH": "4096", "CAMERA_HEIGHT": "3072"})
    code = run.finish(timeout=180)
    assert code != 0, run.out[-4000:]
    line = run.wait_for(r"\[recorder\] ✗ (cannot record .*)").group(1)
    assert line == ("cannot record camera top 4096x3072, camera wrist 4096x3072: one frame is 75497520 bytes, "
                    "over dora's 67108864-byte message limit; lower the resolution or record fewer cameras")
    assert "exceeding the 67108864-byte daemon transport limit" not in run.out
    assert not (workdir / ROOT / "meta" / "info.json").exists()


def test_duplicated_and_swapped_messages_are_never_committed_twice_or_out_of_order(workdir, start):
    dataflow = prepare(workdir)
    graph = yaml.safe_load(dataflow.read_text())
    saver = next(n for n in graph["nodes"] if n["id"] == "saver")
    episode_input = dict(saver["inputs"]["episode"])
    saver["inputs"]["episode"] = {**episode_input, "source": "injector/episode"}
    saver["inputs"]["bogus"] = "injector/noise"
    graph["nodes"].append({"id": "injector", "path": str(REPO / "tests" / "nodes" / "stream_injector.py"),
                           "inputs": {"episode": episode_input}, "outputs": ["episode", "noise"]})
    (workdir / "injected.yml").write_text(yaml.safe_dump(graph, sort_keys=False))
    with busy_loops(2, marker=str(workdir)):
        run = start({"NUM_EPISODES": "1", "EPISODE_TIME_S": "2"}, dataflow="injected.yml")
        code = run.finish(timeout=180)
    assert code == 0, run.out[-4000:]
    summary = re.search(r"duplicates 1, reordered 1, rejected (\{.*\})", run.out)
    assert summary and ast.literal_eval(summary.group(1)) == {"duplicate": 1, "unknown input": 1}, run.out[-4000:]
    recorded, handed, done = map(int, RECORDER_LINE.findall(run.out)[-1])
    assert recorded == handed == done == 60
    info = assert_valid(workdir / ROOT)
    assert info["total_frames"] == 60
    import pyarrow.parquet as pq

    [data_file] = (workdir / ROOT / "data" / "chunk-000").glob("*.parquet")  # v3.0: file-000, v2.1: episode_000000
    frame_index = pq.read_table(data_file).column("frame_index").to_pylist()
    assert frame_index == list(range(60))
    timing = [json.loads(line) for line in (workdir / ROOT / "meta/episodes_timing.jsonl").read_text().splitlines()]
    assert [row["episode_index"] for row in timing] == [0] and timing[0]["frames"] == 60


def test_a_stalled_camera_ends_the_session_after_input_timeout(workdir, start):
    prepare(workdir)
    run = start({**LONG, "INPUT_TIMEOUT_S": "2"})
    run.wait_frames(30)
    camera = node_pid(workdir, "camera.py", "CAMERA_NAME=wrist")
    os.kill(camera, signal.SIGSTOP)  # alive but silent: a hung USB camera
    try:
        run.wait_for(r"\[recorder\] done:", timeout=60)
    finally:
        os.kill(camera, signal.SIGCONT)
    code = run.finish()
    errors = set(re.findall(r"\[recorder\] ✗ (.*)", run.out))
    assert code != 0 and len(errors) == 1, run.out[-4000:]
    assert re.match(r"required input camera_wrist sent nothing for 2\.\d s \(INPUT_TIMEOUT_S=2\)", min(errors))
    recorded, handed, done = map(int, RECORDER_LINE.findall(run.out)[-1])
    assert recorded >= 30 and recorded == handed == done
    assert assert_valid(workdir / ROOT)["total_frames"] == recorded


def test_a_hung_saver_stops_recording_after_saver_timeout(workdir, start):
    prepare(workdir)
    run = start({**LONG, "SAVER_TIMEOUT_S": "3"})
    run.wait_frames(30)
    saver = node_pid(workdir, "saver.py")
    os.kill(saver, signal.SIGSTOP)
    try:
        started = time.monotonic()
        run.wait_for(r"\[recorder\] done:", timeout=60)
        took = time.monotonic() - started
    finally:
        os.kill(saver, signal.SIGCONT)
    code = run.finish()
    errors = set(re.findall(r"\[recorder\] ✗ (.*)", run.out))
    assert code != 0 and took < 20 and len(errors) == 1, run.out[-4000:]
    assert min(errors).startswith("the saver has sent nothing for 3 s (hung): recording stopped")
    # The saver, woken up, finds the recorder gone mid-episode: its frames stay recoverable, and it says how.
    assert re.search(r"\[saver\] ✗ the recorder's stream ended \(closed\) in the middle of episode 0 in progress "
                     r"\(\d+ frames\).*recover_episodes.py " + re.escape(f"{workdir / ROOT} --include-partial"), run.out), run.out[-4000:]
    recorded, taken = map(int, re.search(r"(\d+) frames recorded, (\d+) taken by the saver", min(errors)).groups())
    info = recover_and_validate(workdir, f"hung saver: recorded {recorded}, taken by the saver {taken}")
    assert info["total_frames"] == recorded, "the woken saver took the recorder's note: every frame is recovered"


def test_a_killed_recorder_leaves_the_episode_recoverable_and_the_saver_names_the_command(workdir, start):
    prepare(workdir)
    run = start(LONG)
    run.wait_frames(30)
    os.kill(node_pid(workdir, "recorder.py"), signal.SIGKILL)
    code = run.finish()
    partial = re.search(r"\[saver\] ✗ the recorder's stream ended \(closed\) in the middle of episode 0 in progress "
                        r"\((\d+) frames\)", run.out)
    assert code != 0 and partial, run.out[-4000:]
    assert f"python scripts/recover_episodes.py {workdir / ROOT} --include-partial" in run.out
    info = recover_and_validate(workdir, f"killed recorder: the saver spooled {partial.group(1)}")
    assert info["total_frames"] == int(partial.group(1))


def test_the_console_exits_non_zero_naming_the_loss_when_the_saver_dies(workdir):
    cmd = [sys.executable, str(REPO / "operating_platform" / "core" / "main.py"), f"--record.root={workdir / 'ds'}",
           "--record.episode_time_s=60", "--record.num_episodes=1"]
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "TMPDIR": str(workdir)})
    try:
        deadline = time.monotonic() + 120
        while not spooled(workdir / "ds", "*/vectors.bin") and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        os.kill(node_pid(workdir, "saver.py"), signal.SIGKILL)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1, out
    assert "✗ the saver never reported its end" in out and "✗ recorder: the saver exited" in out
    recorded, handed = map(int, re.search(r"frames recorded (\d+), handed over (\d+), committed 0", out).groups())
    assert recorded >= handed > 0
