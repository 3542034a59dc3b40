#!/usr/bin/env python
"""End-to-end checks of async episode saving with realistic episodes (two 640x480 cameras,
simulated teleoperation), real encodes and real files. Prints as the testing guide shows.

    python scripts/test_async_save_e2e.py [--test NAME] [--verbose] [--frames N]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from operating_platform.dataset import LeRobotDataset
from operating_platform.simulation.teleop import SimTeleopSession

REPO = Path(__file__).resolve().parent.parent
TASK = "pick up the cube"


class Checks:
    """Shared set-up of the tests: a scratch directory and realistic episodes."""

    def __init__(self, workdir: Path, frames: int):
        self.workdir = workdir
        self.frames = frames
        self.session = SimTeleopSession()

    def dataset(self, name: str, **kwargs) -> LeRobotDataset:
        return LeRobotDataset.create(f"e2e/{name}", root=self.workdir / name, fps=30, features=self.session.features(),
                                     robot_type="so101", codebase_version="v2.1", **kwargs)

    def record(self, ds: LeRobotDataset, episode: int, frames: int | None = None) -> None:
        for frame in self.session.episode(episode, frames or self.frames):
            ds.add_frame(frame, task=TASK)

    @staticmethod
    def expect(condition: bool, message: str) -> None:
        if not condition:
            raise AssertionError(message)


def single_episode_save(c: Checks) -> None:
    ds = c.dataset("single")
    c.record(ds, 0)
    t0 = time.perf_counter()
    index = ds.save_episode()
    elapsed_ms = (time.perf_counter() - t0) * 1000
    print(f"  Save time: {elapsed_ms:.1f}ms (should be <500ms)")
    print(f"  Episode index: {index}")
    ds.close()
    c.expect(elapsed_ms < 500, f"save_episode() took {elapsed_ms:.1f}ms")
    c.expect(index == 0 and ds.num_episodes == 1, f"expected 1 committed episode, got {ds.num_episodes}")


def rapid_sequential_saves(c: Checks) -> None:
    ds = c.dataset("rapid")
    print("  Queueing 5 episodes rapidly...")
    for ep in range(5):
        c.record(ds, ep, frames=c.frames // 2)
        t0 = time.perf_counter()
        index = ds.save_episode()
        print(f"    Episode {index}: queued in {(time.perf_counter() - t0) * 1000:.1f}ms")
        c.expect(index == ep, f"episode {ep} got index {index}")
    c.expect(ds.wait_for_save_completion(timeout=300), "saves did not complete")
    status = ds.get_async_save_status()
    ds.close()
    print(f"  Completed: {status['total_completed']}, failed: {status['total_failed']}")
    c.expect(status["total_completed"] == 5 and status["total_failed"] == 0, f"status {status}")
    c.expect(ds.num_episodes == 5, f"{ds.num_episodes} episodes committed, expected 5")


def performance_comparison(c: Checks) -> None:
    timings = {}
    for mode, kwargs in (("sync", dict(use_async_saver=False, live_encoding=False)), ("async", {})):
        ds = c.dataset(f"perf_{mode}", **kwargs)
        times = []
        for ep in range(3):
            c.record(ds, ep)
            t0 = time.perf_counter()
            ds.save_episode()
            times.append((time.perf_counter() - t0) * 1000)
        ds.close()
        timings[mode] = statistics.mean(times)
        print(f"  {mode:>5}: save_episode() avg {timings[mode]:.1f}ms over 3 episodes of {c.frames} frames")
    speedup = timings["sync"] / max(timings["async"], 1e-3)
    print(f"  Speedup: {speedup:.0f}x (sync encodes at save time, as LeRobot does)")
    c.expect(timings["async"] < 100, f"async save took {timings['async']:.1f}ms on average")
    c.expect(speedup > 10, f"async is only {speedup:.1f}x faster than sync")


def exit_during_pending(c: Checks) -> None:
    ds = c.dataset("exit")
    for ep in range(3):
        c.record(ds, ep, frames=c.frames // 2)
        ds.save_episode()
    pending = ds.get_async_save_status()["pending_tasks"]
    print(f"  Pending saves at exit: {pending}")
    ds.close()  # what the console's `e` does: drain, then stop
    print(f"  Committed after exit: {ds.num_episodes}")
    c.expect(ds.num_episodes == 3, f"{ds.num_episodes} episodes committed, expected 3")
    c.expect(not (ds.root / ".spool").exists(), "spool not empty after a clean exit")


def queue_overflow(c: Checks) -> None:
    ds = c.dataset("overflow", async_save_queue_size=2)
    frames = max(4, c.frames // 6)
    for ep in range(6):
        c.record(ds, ep, frames=frames)
        ds.save_episode()  # waits for a slot when the queue is full; never drops
    status = ds.get_async_save_status()
    print(f"  Submitted 6 episodes into a queue of 2: submitted={status['total_submitted']}")
    ds.close()
    print(f"  Committed: {ds.num_episodes}, failed: {status['total_failed']}")
    c.expect(status["total_submitted"] == 6, f"status {status}")
    c.expect(ds.num_episodes == 6, f"{ds.num_episodes} episodes committed, expected 6 (none dropped)")


def data_format_validation(c: Checks) -> None:
    roots = {}
    for mode in ("sync", "async"):
        ds = c.dataset(f"format_{mode}", use_async_saver=(mode == "async"))
        c.session.now = 0.0
        for ep in range(2):
            c.record(ds, ep, frames=c.frames // 2)
            ds.save_episode()
        ds.close()
        roots[mode] = ds.root
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/validate_dataset_format.py"),
         "--reference", str(roots["sync"]), "--target", str(roots["async"])],
        capture_output=True, text=True,
    )
    last = [line for line in result.stdout.splitlines() if line.strip()][-2:]
    for line in last:
        print(f"  {line.strip()}")
    c.expect(result.returncode == 0, "validator rejected the async dataset:\n" + result.stdout + result.stderr)


TESTS = {
    "single_episode_save": ("Single Episode Save", single_episode_save),
    "rapid_sequential_saves": ("Rapid Sequential Saves", rapid_sequential_saves),
    "performance_comparison": ("Performance Comparison", performance_comparison),
    "exit_during_pending": ("Exit During Pending Saves", exit_during_pending),
    "queue_overflow": ("Queue Overflow", queue_overflow),
    "data_format_validation": ("Data Format Validation", data_format_validation),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test", choices=sorted(TESTS), help="run only this test")
    parser.add_argument("--verbose", action="store_true", help="show the saver's log lines")
    parser.add_argument("--frames", type=int, default=60, help="frames per episode (default: %(default)s = 2 s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, format="    %(name)s: %(message)s")
    selected = [args.test] if args.test else list(TESTS)
    workdir = Path(tempfile.mkdtemp(prefix="async_save_e2e_"))
    passed = 0
    try:
        checks = Checks(workdir, args.frames)
        for name in selected:
            title, test = TESTS[name]
            print(f"\nTest: {title}")
            try:
                test(checks)
            except Exception as e:  # noqa: BLE001 - report and go on with the other tests
                print(f"✗ {title} FAILED: {e}")
                if args.verbose:
                    traceback.print_exc()
                continue
            passed += 1
            print(f"✓ {title} PASSED")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nResults: {passed}/{len(selected)} passed")
    print("✓ ALL TESTS PASSED" if passed == len(selected) else "✗ SOME TESTS FAILED")
    return 0 if passed == len(selected) else 1


if __name__ == "__main__":
    sys.exit(main())
