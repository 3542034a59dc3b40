#!/usr/bin/env python
"""Episode saving, sync vs async, in one run: what the operator waits for and what it costs.

Two 640x480 cameras at 30 fps, realistic simulated content, frames fed at real-time pace
(as a recorder does), 10 episodes of 20 s by default. The baseline is synchronous saving
that encodes at save time, as LeRobot's recorder does. Both write LeRobot v3.0 (the
default); a third, async run writes v2.1, and the storage figures compare the two formats:
bytes written per byte of final dataset (write amplification, spool included), files per
100 episodes, and the time the v3.0 pack at close takes.

    python benchmarks/bench_save.py [--episodes 10] [--seconds 20] [--vcodec libsvtav1]
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from operating_platform.dataset import LeRobotDataset
from operating_platform.simulation.teleop import SimTeleopSession

FPS = 30


class PeakRss:
    """Samples this process's RSS every 50 ms; `take()` returns the peak since the last take."""

    def __init__(self):
        self._proc = psutil.Process()
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            rss = self._proc.memory_info().rss
            with self._lock:
                self._peak = max(self._peak, rss)

    def take(self) -> int:
        with self._lock:
            peak, self._peak = self._peak, self._proc.memory_info().rss
        return peak

    def stop(self) -> None:
        self._stop.set()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run_mode(mode: str, root: Path, args, version: str = "v3.0") -> dict:
    kwargs = dict(use_async_saver=False, live_encoding=False) if mode == "sync" else dict(use_async_saver=True)
    session = SimTeleopSession()
    written_before = psutil.Process().io_counters().write_chars
    ds = LeRobotDataset.create(f"bench/{mode}", root=root, fps=FPS, features=session.features(), robot_type="so101",
                               vcodec=args.vcodec, codebase_version=version, **kwargs)
    frames = int(args.seconds * FPS)
    save_ms, commit_s, rss = [], [], []
    rss_probe = PeakRss()
    for ep in range(args.episodes):
        start = time.perf_counter()
        for i, frame in enumerate(session.episode(ep, frames)):
            ds.add_frame(frame, task="pick up the cube")
            delay = start + (i + 1) / FPS - time.perf_counter()  # the camera's pace
            if delay > 0 and not args.no_pacing:
                time.sleep(delay)
        t0 = time.perf_counter()
        ds.save_episode()
        save_ms.append((time.perf_counter() - t0) * 1000)
        if mode == "sync":
            commit_s.append(save_ms[-1] / 1000)
        rss.append(rss_probe.take())
        print(f"  [{mode}] episode {ep}: save_episode() {save_ms[-1]:8.1f} ms, peak RSS {rss[-1] / 2**20:7.0f} MiB",
              flush=True)
    drain_start = time.perf_counter()
    ds.wait_for_save_completion()
    drain_s = time.perf_counter() - drain_start
    if mode == "async":
        commit_s = [r["completed_at"] - r["submitted_at"] for r in ds.get_async_save_results()]
    rss.append(rss_probe.take())
    rss_probe.stop()
    ds.close()
    assert ds.num_episodes == args.episodes, f"{mode}: {ds.num_episodes} of {args.episodes} episodes committed"
    written = psutil.Process().io_counters().write_chars - written_before
    files = {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*")
             if p.is_file() and not p.relative_to(root).parts[0].startswith(".")}
    pack = getattr(ds, "last_pack", None)
    spooled = args.episodes * frames * sum(int(np.prod(ft["shape"])) for ft in ds.features.values() if ft["dtype"] == "video")
    return {"save_ms": save_ms, "commit_s": commit_s, "rss": rss, "drain_s": drain_s, "frames": frames,
            "written": written, "spooled": spooled, "final_bytes": sum(files.values()), "files": files,
            "pack_s": pack.seconds if pack else None, "pack_bytes": pack.bytes_written if pack else 0}


def files_per_100_episodes(r: dict, version: str, episodes: int) -> tuple[float, int]:
    """(files measured, scaled to 100 episodes; files 100 such episodes would take at the default size limits)."""
    measured = len(r["files"]) * 100 / episodes
    if version == "v2.1":
        per_episode = sum(1 for rel in r["files"] if rel.endswith((".mp4", ".parquet"))) / episodes
        return measured, int(round(100 * per_episode)) + 4  # + info, episodes, stats, tasks
    by_kind: dict[str, int] = {}
    for rel, size in r["files"].items():
        parts = rel.split("/")
        kind = "/".join(parts[:2]) if parts[0] == "videos" else parts[0] if parts[0] == "data" else None
        if kind:
            by_kind[kind] = by_kind.get(kind, 0) + size
    limit = {"data": 100 * 2**20, "videos": 200 * 2**20}
    shared = sum(math.ceil(100 * size / episodes / limit[kind.split("/")[0]]) for kind, size in by_kind.items())
    return measured, shared + 4  # + meta/episodes file, tasks, stats, info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0, help="episode length (default: %(default)s)")
    parser.add_argument("--vcodec", default="libsvtav1")
    parser.add_argument("--no-pacing", action="store_true", help="feed frames as fast as possible")
    parser.add_argument("--keep", action="store_true", help="keep the datasets (printed path)")
    args = parser.parse_args()
    if args.episodes < 2:
        parser.error("--episodes must be >= 2 (RSS growth is measured from episode 2)")
    workdir = Path(tempfile.mkdtemp(prefix="bench_save_"))
    print(f"bench_save: {args.episodes} episodes x {args.seconds:g} s, 2 cameras 640x480 @ {FPS} fps, "
          f"{args.vcodec}, {psutil.cpu_count()} cores\n")
    try:
        results = {mode: run_mode(mode, workdir / mode, args) for mode in ("sync", "async")}
        results["async v2.1"] = run_mode("async", workdir / "async_v21", args, version="v2.1")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"datasets kept in {workdir}")

    sync, asyn = results["sync"], results["async"]
    episode_s = sync["frames"] / FPS
    encode_fps = [2 * sync["frames"] / s for s in sync["commit_s"]]
    print("\n== save_episode() return time (what the operator waits for)")
    for name, r in (("sync (baseline)", sync), ("async", asyn)):
        print(f"  {name:16s} p50 {percentile(r['save_ms'], 50):9.1f} ms   p99 {percentile(r['save_ms'], 99):9.1f} ms")
    print(f"  ratio sync/async p50 {percentile(sync['save_ms'], 50) / percentile(asyn['save_ms'], 50):9.0f}x"
          f"   p99 {percentile(sync['save_ms'], 99) / percentile(asyn['save_ms'], 99):9.0f}x   (target: async p99 <= 10 ms)")
    print("\n== save_episode() -> episode committed on disk")
    print(f"  sync  p50 {statistics.median(sync['commit_s']):6.2f} s   max {max(sync['commit_s']):6.2f} s")
    print(f"  async p50 {statistics.median(asyn['commit_s']):6.2f} s   max {max(asyn['commit_s']):6.2f} s"
          f"   (live encoding during recording; final drain {asyn['drain_s']:.2f} s)")
    print("\n== background encode throughput (whole episode encoded after it ends, 2 cameras)")
    print(f"  {statistics.median(encode_fps):7.1f} frames/s = {statistics.median(encode_fps) / (2 * FPS):4.2f}x real time"
          f"   (target >= 2x; an episode of {episode_s:g} s takes {statistics.median(sync['commit_s']):.2f} s)")
    print("\n== peak RSS per episode (MiB)")
    for name, r in (("sync", sync), ("async", asyn)):
        mib = [v / 2**20 for v in r["rss"][: args.episodes]]
        growth = (mib[-1] - mib[1]) / mib[1] * 100
        print(f"  {name:5s} " + " ".join(f"{v:5.0f}" for v in mib) + f"   growth ep2->ep{args.episodes}: {growth:+.1f}%"
              "   (target < 10%)")
    print("\n== storage: LeRobot v3.0 (per-episode commit + pack at close) vs v2.1 (baseline), async runs")
    v21 = results["async v2.1"]
    for name, version, r in (("v2.1 (baseline)", "v2.1", v21), ("v3.0", "v3.0", asyn)):
        measured, at_limits = files_per_100_episodes(r, version, args.episodes)
        beyond_spool = r["written"] - r["spooled"]
        print(f"  {name:16s} final {r['final_bytes'] / 2**20:7.1f} MiB; written {r['written'] / 2**20:7.1f} MiB, of which raw-frame"
              f" spool {r['spooled'] / 2**20:7.1f} MiB; write amplification {r['written'] / r['final_bytes']:6.2f}"
              f" (without the spool {beyond_spool / r['final_bytes']:5.2f}); files/100 episodes {measured:4.0f}"
              f" measured, {at_limits} at default size limits")
    print(f"  v3.0 pack at close: {asyn['pack_s']:.2f} s for {args.episodes} episodes, {asyn['pack_bytes'] / 2**20:.1f} MiB "
          f"written ({asyn['pack_bytes'] / asyn['final_bytes']:.2f} per final byte)   ratio of write amplification "
          f"v3.0/v2.1 {(asyn['written'] / asyn['final_bytes']) / (v21['written'] / v21['final_bytes']):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
