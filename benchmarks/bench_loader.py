#!/usr/bin/env python
"""Data-loader benchmark: decode throughput with workers, O(1) restore, state size.

    python benchmarks/bench_loader.py [--episodes 4 --frames 60 --batch-size 8 --batches 12 --vcodec libsvtav1]

Reads a dataset recorded from the simulated sources with two 640x480 cameras (built
once and cached under --cache-dir). Prints samples/s with 0, 1 and 2 workers (ratio
against 0 workers), the time to restore the loader and deliver its first batch after
10 and after 100,000 batches (ratio: must stay ~1, nothing is skipped through),
what restoring by skipping batches would cost (the counting loader's approach,
extrapolated from measured batches), and the state size in bytes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from operating_platform.training import loader_state
from operating_platform.training.loader import create_data_loader
from operating_platform.training.reader import LeRobotReader
from operating_platform.simulation.teleop import record_sim_dataset


def dataset(args) -> Path:
    root = Path(args.cache_dir) / f"bench_loader_{args.episodes}x{args.frames}_{args.vcodec}"
    if not (root / "meta" / "info.json").exists():
        print(f"recording {args.episodes} episodes x {args.frames} frames, 2 cameras 640x480, {args.vcodec} -> {root}")
        start = time.perf_counter()
        record_sim_dataset(root, args.episodes, args.frames, cameras=("top", "wrist"), image_hw=(480, 640), vcodec=args.vcodec)
        print(f"  recorded in {time.perf_counter() - start:.1f} s")
    return root


def throughput(reader, args, workers: int) -> float:
    with create_data_loader(reader, args.batch_size, seed=0, num_workers=workers, prefetch=2) as loader:
        it = iter(loader)
        next(it)  # pool start-up and decoder opening are not throughput
        start = time.perf_counter()
        for _ in range(args.batches):
            next(it)
        return args.batches * args.batch_size / (time.perf_counter() - start)


def restore_cost(reader, args, state_dir: Path, batches_seen: int) -> tuple[float, float]:
    """(seconds in load_dataloader_state, seconds from then to the first batch) at batches_seen."""
    probe = create_data_loader(reader, args.batch_size, seed=0, persistent_iterator=True)
    loader_state.save_state(state_dir, {**iter(probe).get_state(), "batches_seen": batches_seen})
    loader = create_data_loader(reader, args.batch_size, seed=0, persistent_iterator=True)
    start = time.perf_counter()
    loader.load_dataloader_state(state_dir)
    loaded = time.perf_counter()
    next(iter(loader))
    return loaded - start, time.perf_counter() - loaded


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--batches", type=int, default=12, help="timed batches per worker setting")
    p.add_argument("--vcodec", default="libsvtav1")
    p.add_argument("--cache-dir", default=tempfile.gettempdir())
    args = p.parse_args()
    reader = LeRobotReader(dataset(args), action_horizon=16)
    print(f"dataset: {len(reader)} frames, cameras {reader.camera_keys}, batch {args.batch_size}")

    rates = {w: throughput(reader, args, w) for w in (0, 1, 2)}
    for w, rate in rates.items():
        print(f"throughput, {w} workers: {rate:8.1f} samples/s  (x{rate / rates[0]:.2f} vs 0 workers)")

    with tempfile.TemporaryDirectory() as tmp:
        costs = {n: [restore_cost(reader, args, Path(tmp) / str(n), n) for _ in range(5)] for n in (10, 100_000)}
        size = sum(f.stat().st_size for f in (Path(tmp) / "100000").iterdir())
    load = {n: min(c[0] for c in v) for n, v in costs.items()}
    first = {n: min(c[1] for c in v) for n, v in costs.items()}
    for n in (10, 100_000):
        print(f"restore after {n:>7,} batches: load_dataloader_state {1000 * load[n]:6.2f} ms, first batch {1000 * first[n]:7.2f} ms")
    print(f"restore ratio 100,000 vs 10 batches: load x{load[100_000] / load[10]:.2f}, first batch x{first[100_000] / first[10]:.2f} "
          "(O(1): both stay ~1)")
    far = load[100_000] + first[100_000]
    per_batch = args.batch_size / rates[0]
    print(f"restore by skipping batches (counting loader), extrapolated from {per_batch * 1000:.1f} ms/batch: "
          f"{10 * per_batch:.2f} s after 10, {100_000 * per_batch / 3600:.1f} h after 100,000 "
          f"(x{100_000 * per_batch / far:,.0f} ours)")
    print(f"state size: {size} bytes per process")


if __name__ == "__main__":
    main()
