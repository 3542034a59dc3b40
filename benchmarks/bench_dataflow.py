"""Benchmark the real recording dataflow: async saving vs synchronous saving, in one run.

    python benchmarks/bench_dataflow.py                       # 10 episodes x 20 s per mode (~8 min)
    python benchmarks/bench_dataflow.py --episodes 3 --episode-time-s 4 --reset-time-s 1   # quick

Two simulated 640x480 cameras at 30 fps, simulated SO-101 leader/follower, recorder and
saver under a private dora coordinator/daemon; the benchmark connects to the keyboard
node's socket to read the recorder's and saver's status, watches meta/info.json for commits, and
samples every node's RSS. Targets: save response p99 <= 50 ms; 0 dropped, 0 gaps;
each episode committed <= 5 s after its end while the next one records; per-node peak
RSS flat across episodes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from operating_platform.core.config import parse_config
from operating_platform.core.dataflow import write_dataflow
from operating_platform.core.join import connect_to
from operating_platform.core.launcher import DoraLauncher
from operating_platform.dataflow.messages import MessageError, RecorderStatus, SaverStatus, decode_status

NODE_SCRIPTS = ("camera", "arm", "recorder", "saver")


@dataclass
class Session:
    mode: str
    wall_s: float = 0.0
    recorder: RecorderStatus = field(default_factory=RecorderStatus)
    saver: SaverStatus = field(default_factory=SaverStatus)
    ended_at: list[float] = field(default_factory=list)  # when the recorder reported each episode ended
    committed_at: list[float] = field(default_factory=list)  # when info.json first counted it
    rss_by_episode: dict[str, list[int]] = field(default_factory=dict)  # node -> peak RSS per episode
    saver_cpu_s: float = 0.0


def node_processes(dataset_root: str) -> dict[str, psutil.Process]:
    """The node processes of this session: nodes/<script>.py with our DATASET_ROOT in their env."""
    found = {}
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        script = next((s for s in NODE_SCRIPTS if f"nodes/{s}.py" in cmd), None)
        if script is None:
            continue
        try:
            env = proc.environ()
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
        if env.get("DATASET_ROOT") != dataset_root:
            continue
        name = {"camera": f"camera_{env.get('CAMERA_NAME')}", "arm": f"arm_{env.get('ARM_ROLE')}"}.get(script, script)
        found[name] = proc
    return found


def committed_episodes(root: Path) -> int:
    try:
        return json.loads((root / "meta" / "info.json").read_text())["total_episodes"]
    except (OSError, ValueError, KeyError):
        return 0


def run_session(mode: str, args, workdir: Path) -> Session:
    root = workdir / f"ds_{mode}"
    cfg = parse_config([
        f"--record.root={root}", f"--record.use_async_save={'true' if mode == 'async' else 'false'}",
        f"--record.num_episodes={args.episodes}", f"--record.episode_time_s={args.episode_time_s}",
        f"--record.reset_time_s={args.reset_time_s}", f"--record.vcodec={args.vcodec}",
    ])
    run_dir = workdir / f"run_{mode}"
    run_dir.mkdir()
    launcher = DoraLauncher(run_dir)
    session = Session(mode)
    try:
        launcher.up()
        started = time.monotonic()
        uuid = launcher.start(write_dataflow(cfg, run_dir / "dataflow.yml"), f"bench-{mode}")
        with connect_to(uuid, 60) as link:
            watch(link, session, root, args)
        session.wall_s = time.monotonic() - started
    finally:
        launcher.stop()
        launcher.close()
    return session


def watch(node, session: Session, root: Path, args) -> None:
    procs: dict[str, psutil.Process] = {}
    last_rss = 0.0
    while not session.saver.done:
        event = node.next(timeout=0.05)
        if event is None:
            break
        now = time.monotonic()
        if event["type"] == "INPUT":
            try:
                status = decode_status(event["value"], RecorderStatus if event["id"] == "recorder_status" else SaverStatus)
            except MessageError:
                continue
            if event["id"] == "recorder_status":
                saved = status.episodes_recorded
                session.ended_at += [now] * (saved - len(session.ended_at))
                session.recorder = status
            else:
                session.saver = status
        committed = committed_episodes(root)
        session.committed_at += [now] * (committed - len(session.committed_at))
        if now - last_rss >= 0.25:
            last_rss = now
            procs = procs if len(procs) >= 6 else node_processes(str(root.resolve()))
            episode = min(session.recorder.episodes_recorded, args.episodes - 1)
            for name, proc in procs.items():
                try:
                    rss = proc.memory_info().rss
                    if name == "saver":
                        session.saver_cpu_s = sum(proc.cpu_times()[:2])
                except psutil.NoSuchProcess:
                    continue
                per_episode = session.rss_by_episode.setdefault(name, [0] * args.episodes)
                per_episode[episode] = max(per_episode[episode], rss)


def pct(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def report(sessions: dict[str, Session], args) -> None:
    recorded_s = args.episodes * args.episode_time_s
    rows = {}
    for mode, s in sessions.items():
        r, sv = s.recorder, s.saver
        response = r.save_response_ms
        lag = [c - e for e, c in zip(s.ended_at, s.committed_at)]
        wait_s = float(np.mean(response)) / 1e3 if response else 0.0
        per_episode_s = args.episode_time_s + args.reset_time_s + wait_s
        rows[mode] = {
            "save response p50 ms": pct(response, 50),
            "save response p99 ms": pct(response, 99),
            "frames captured": r.frames_kept,
            "frames saved": sv.frames_committed,
            "dropped": r.frames_kept - sv.frames_committed,
            "sequence gaps": sv.sequence_gaps,
            "stale samples skipped": r.stale_skips,
            "episodes per 10 min": 600 / per_episode_s,
            "end -> committed p50 s": pct(lag, 50),
            "end -> committed max s": max(lag) if lag else float("nan"),
            "saver CPU s per recorded s": s.saver_cpu_s / recorded_s,
            "longest hand-over to saver ms": r.send_max_ms,
            "session wall s": s.wall_s,
            "saves completed/failed": f"{sv.completed}/{sv.failed}",
        }
    print(f"\n== {args.episodes} episodes x {args.episode_time_s:g} s, reset {args.reset_time_s:g} s, "
          f"2 cameras 640x480 @ 30 fps, vcodec {args.vcodec} ==")
    print(f"{'metric':34s}" + "".join(f"{m:>16s}" for m in rows))
    for metric in next(iter(rows.values())):
        cells = "".join(f"{v:>16.2f}" if isinstance(v, float) else f"{v!s:>16s}" for v in (rows[m][metric] for m in rows))
        print(f"{metric:34s}{cells}")
    if "async" in rows and "sync" in rows:
        a, s = rows["async"], rows["sync"]
        print(f"\nasync vs sync: save response p99 {s['save response p99 ms'] / max(a['save response p99 ms'], 1e-3):.0f}x lower, "
              f"episodes per 10 min {a['episodes per 10 min'] / s['episodes per 10 min']:.2f}x")
    print("\npeak RSS per node (MB): episode 1 / 2 / last, growth after episode 2 (flat = bounded memory)")
    for mode, s in sessions.items():
        for name, peaks in sorted(s.rss_by_episode.items()):
            peaks = [p / 2**20 for p in peaks if p]
            if len(peaks) >= 2:
                print(f"  {mode:5s} {name:14s} {peaks[0]:8.1f} / {peaks[1]:8.1f} / {peaks[-1]:8.1f}   "
                      f"{max(peaks[1:]) - peaks[1]:+7.1f}   all: {' '.join(f'{p:.0f}' for p in peaks)}")
    checks = {"0 dropped, 0 gaps": all(r["dropped"] == 0 and r["sequence gaps"] == 0 for r in rows.values())}
    if a := rows.get("async"):
        checks["save response p99 <= 50 ms (async)"] = a["save response p99 ms"] <= 50
        checks["committed <= 5 s after episode end (async)"] = a["end -> committed max s"] <= 5
    print()
    for name, ok in checks.items():
        print(f"  {'✓' if ok else '✗'} {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--episode-time-s", type=float, default=20.0)
    parser.add_argument("--reset-time-s", type=float, default=2.0)
    parser.add_argument("--vcodec", default="libsvtav1")
    parser.add_argument("--modes", default="async,sync", help="comma-separated: async, sync")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dataflow-") as tmp:
        sessions = {}
        for mode in args.modes.split(","):
            print(f"[{mode}] recording {args.episodes} x {args.episode_time_s:g} s ...", flush=True)
            sessions[mode] = run_session(mode, args, Path(tmp))
        report(sessions, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
