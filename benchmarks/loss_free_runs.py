#!/usr/bin/env python
"""Clean `dora run dataflow.yml` runs beside CPU busy loops: are all recorded frames committed?

    python benchmarks/loss_free_runs.py [--runs 20] [--busy 3] [--episodes 3] [--episode-time 2]

Each run records into a fresh directory; the figures come from the recorder's and the saver's
own summaries and from the dataset's meta/info.json. Exit code 1 when any run lost a frame.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORDER_LINE = re.compile(r"frames recorded (\d+), handed over (\d+), committed (\d+)")
SAVER_LINE = re.compile(r"\[saver\] frames received (\d+), committed (\d+)")


@contextlib.contextmanager
def busy_loops(n: int, marker: str = "busy-loop"):
    """`n` Python processes spinning on the CPU (each its own process group), killed on exit."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass", marker], start_new_session=True)
             for _ in range(n)]
    try:
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def prepare(workdir: Path, dataflow: Path = REPO / "dataflow.yml") -> Path:
    """A copy of the dataflow in `workdir` (the dataset lands in workdir/data/)."""
    shutil.copy(dataflow, workdir / dataflow.name)
    if not (workdir / "nodes").exists():
        (workdir / "nodes").symlink_to(REPO / "nodes")
    return workdir / dataflow.name


def dora_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def start_dora_run(workdir: Path, dataflow: str = "dataflow.yml", env: dict[str, str] | None = None) -> subprocess.Popen:
    args = [str(Path(sys.executable).with_name("dora")), "run", dataflow]
    for key, value in (env or {}).items():
        args += ["--env", f"{key}={value}"]
    return subprocess.Popen(args, cwd=workdir, env=dora_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float) -> str:
    """The run's whole output; the process group is killed if it outlives `timeout`.

    Every wait is bounded: the output is read on a thread (a node that outlives dora can
    hold the pipe open), and the run itself is waited for with a timeout, then killed.
    """
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    killed = ""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        killed = f"\n[loss_free_runs] killed after {timeout:g} s\n"
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    reader.join(timeout=10)
    return "".join(chunks) + killed


@dataclass
class RunFigures:
    returncode: int
    recorded: int | None  # the recorder's "frames recorded"
    saver_committed: int | None  # the saver's own "committed"
    dataset_frames: int | None  # meta/info.json total_frames

    @property
    def lossless(self) -> bool:
        return self.returncode == 0 and self.recorded is not None and self.recorded > 0 and (
            self.recorded == self.saver_committed == self.dataset_frames)


def figures(out: str, returncode: int, root: Path) -> RunFigures:
    rec, sav = RECORDER_LINE.findall(out), SAVER_LINE.findall(out)
    info = root / "meta" / "info.json"
    total = json.loads(info.read_text())["total_frames"] if info.exists() else None
    return RunFigures(returncode, int(rec[-1][0]) if rec else None, int(sav[-1][1]) if sav else None, total)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--busy", type=int, default=3, help="CPU busy loops beside the dataflow")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--episode-time", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per run before it counts as hung")
    args = parser.parse_args(argv)
    env = {"NUM_EPISODES": args.episodes, "EPISODE_TIME_S": args.episode_time, "RESET_TIME_S": 0.3}
    lossless = 0
    with busy_loops(args.busy), tempfile.TemporaryDirectory(prefix="loss-free-") as tmp:
        for run in range(1, args.runs + 1):
            workdir = Path(tmp) / f"run{run:02d}"
            workdir.mkdir()
            prepare(workdir)
            started = time.monotonic()
            proc = start_dora_run(workdir, env={k: f"{v:g}" for k, v in env.items()})
            out = finish(proc, args.timeout)
            f = figures(out, proc.returncode, workdir / "data" / "sim_demo")
            lossless += f.lossless
            print(f"run {run:2d}: exit {f.returncode}, recorded {f.recorded}, committed (saver) {f.saver_committed}, "
                  f"dataset frames {f.dataset_frames}, {time.monotonic() - started:.0f} s, "
                  f"load average {os.getloadavg()[0]:.1f}"
                  f"{'' if f.lossless else '  <-- LOSS'}", flush=True)
            if not f.lossless:
                (Path(tempfile.gettempdir()) / f"loss_free_run{run:02d}.log").write_text(out)
    print(f"{lossless}/{args.runs} runs committed every recorded frame ({args.busy} busy loops beside them)")
    return 0 if lossless == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
