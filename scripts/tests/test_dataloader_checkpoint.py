#!/usr/bin/env python
"""Data-loader checkpointing, comprehensively: everything the simple test checks, plus
repeated save/load cycles across epoch boundaries, restore before or after the iterator
exists, batch identifiers (every epoch covered exactly once), worker processes,
multi-process sharding (and restoring with another process count), and refusal of
states written for another seed or dataset.

    python scripts/tests/test_dataloader_checkpoint.py --config-name=sim_small
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from checkpoint_common import FACTS, RULE, CheckFailed, LoaderFactory, check, checkpoint_root, passed, run_suite, state_size
from test_dataloader_checkpoint_simple import run_steps as basic_steps

from operating_platform.training.loader import create_data_loader
from operating_platform.training.loader_state import DataLoaderStateError
from operating_platform.training.reference.mock import MockDataset
from operating_platform.training.sources import batches_equal


def take(loader, n: int) -> list[dict]:
    it = iter(loader)
    return [next(it) for _ in range(n)]


def save_load_cycles(make: LoaderFactory, root: Path) -> None:
    epoch_batches = -(-len(make.dataset) // make().layout.batch_size)
    total = 2 * epoch_batches + 3  # crosses two epoch boundaries
    reference = take(make(), total)
    stops = sorted({1, epoch_batches - 1, epoch_batches + 1, total - 2})
    position, loader = 0, make()
    for cycle, stop in enumerate(stops, 1):
        for i, batch in enumerate(take(loader, stop - position), position):
            check(batches_equal(batch, reference[i]), f"cycle {cycle}: batch {i} differs from the uninterrupted run")
        state_dir = root / f"cycle_{cycle}"
        loader.save_dataloader_state(state_dir)
        loader.close()
        loader = make()
        position = loader.load_dataloader_state(state_dir)
        check(position == stop, f"cycle {cycle}: restored batches_seen={position}, expected {stop}")
        print(f"  Cycle {cycle}: saved and restored at batch {stop} (epoch {stop * loader.layout.batch_size // len(make.dataset)})")
    for i, batch in enumerate(take(loader, total - position), position):
        check(batches_equal(batch, reference[i]), f"final leg: batch {i} differs from the uninterrupted run")
    loader.close()
    passed(f"{len(stops)} save/load cycles over {total} batches reproduce the uninterrupted run bit for bit")


def restore_order(make: LoaderFactory, root: Path) -> None:
    reference = take(make(), 12)
    original = make()
    take(original, 6)
    original.save_dataloader_state(root / "order")
    late = make()
    it = iter(late)
    next(it), next(it)  # iterator exists and has prefetched before the load
    late.load_dataloader_state(root / "order")
    for i in range(6, 12):
        check(batches_equal(next(it), reference[i]), f"load after iter(): batch {i} differs")
    passed("Loading after the iterator was created continues exactly (prefetched batches discarded)")


def identifiers(make: LoaderFactory) -> None:
    loader = make(drop_last=False)
    n, batch_size = len(make.dataset), loader.layout.batch_size
    ids = np.concatenate([b["index"] for b in take(loader, -(-3 * n // batch_size))])[: 3 * n]
    for epoch in range(3):
        window = np.sort(ids[epoch * n : (epoch + 1) * n])
        check(np.array_equal(window, np.arange(n)), f"epoch {epoch} does not cover every sample exactly once")
    check(not np.array_equal(ids[:n], ids[n : 2 * n]), "epochs 0 and 1 have the same order (shuffle per epoch broken)")
    passed(f"Batch identifiers: each of 3 epochs covers all {n} samples exactly once, in a new order")


def workers(make: LoaderFactory, root: Path) -> None:
    reference = take(make(num_workers=0), 10)
    with make(num_workers=2, prefetch=3) as loader:
        got = take(loader, 4)
        loader.save_dataloader_state(root / "workers")
    with make(num_workers=2, prefetch=3) as restored:
        restored.load_dataloader_state(root / "workers")
        got += take(restored, 6)
    check(all(batches_equal(a, b) for a, b in zip(got, reference)), "worker batches differ from in-process batches")
    passed("2 workers with prefetch give the in-process batches, and resume exactly")


def multi_process(make: LoaderFactory, root: Path) -> None:
    batch = make().layout.batch_size
    shards = [make(process_index=p, process_count=2, batch_size=batch) for p in range(2)]
    epoch_steps = len(make.dataset) // (2 * batch)
    seen = [np.concatenate([b["index"] for b in take(s, epoch_steps)]) for s in shards]
    check(not set(seen[0]) & set(seen[1]), "processes 0 and 1 read overlapping samples")
    for s in shards:
        s.save_dataloader_state(root / "multi")
    passed(f"2 processes: disjoint shards ({len(seen[0])} + {len(seen[1])} samples); per-process state files written")
    nexts = [take(s, 1)[0] for s in shards]
    single = make(process_index=0, process_count=1, batch_size=2 * batch)
    single.load_dataloader_state(root / "multi")
    merged = take(single, 1)[0]
    check(np.array_equal(merged["index"], np.concatenate([n["index"] for n in nexts])), "1-process resume is not at the same global position")
    passed("Restored with 1 process (same global batch): continues at the same global position")
    odd = make(process_index=0, process_count=3, batch_size=batch)
    try:
        odd.load_dataloader_state(root / "multi")
        if epoch_steps * 2 % 3 == 0:
            passed("Restored with 3 processes: the position falls on a 3-process batch boundary")
        else:
            raise CheckFailed("restoring at a position that is not a 3-process batch boundary was accepted")
    except DataLoaderStateError as e:
        passed(f"Restoring with 3 processes refused: {e}")


def refusals(make: LoaderFactory, root: Path) -> None:
    loader = make()
    take(loader, 2)
    loader.save_dataloader_state(root / "refuse")
    layout = loader.layout
    other_seed = make(seed=layout.seed + 1)
    other_data = create_data_loader(
        MockDataset(num_samples=len(make.dataset), seed=99), layout.batch_size, seed=layout.seed, persistent_iterator=True
    )
    for what, candidate in (("another seed", other_seed), ("another dataset", other_data)):
        try:
            candidate.load_dataloader_state(root / "refuse")
        except DataLoaderStateError as e:
            passed(f"State refused for {what}: {e}")
        else:
            raise CheckFailed(f"a state was applied to {what}")


def size_and_speed(make: LoaderFactory, root: Path) -> None:
    loader = make()
    take(loader, 3)
    loader.save_dataloader_state(root / "size")
    start = time.perf_counter()
    make().load_dataloader_state(root / "size")
    FACTS["state_bytes"] = state_size(root / "size")
    passed(f"State size {state_size(root / 'size')} bytes; restore took {1000 * (time.perf_counter() - start):.2f} ms")


def run(args) -> None:
    make = LoaderFactory(args.config_name)
    with checkpoint_root(args.checkpoint_dir) as root:
        sections = [
            ("Basic save / restore", lambda: basic_steps(make, root / "basic")),
            ("Multiple save/load cycles across epochs", lambda: save_load_cycles(make, root)),
            ("Restore after the iterator exists", lambda: restore_order(make, root)),
            ("Batch identifier tracking", lambda: identifiers(make)),
            ("Worker processes and prefetch", lambda: workers(make, root)),
            ("Multi-host scenario", lambda: multi_process(make, root)),
            ("Refusing foreign states", lambda: refusals(make, root)),
            ("State size and restore cost", lambda: size_and_speed(make, root)),
        ]
        for number, (title, section) in enumerate(sections, 1):
            print(f"\n{RULE}\nTest {number}: {title}\n{RULE}")
            section()
            FACTS.setdefault("sections_done", []).append(title)


if __name__ == "__main__":
    sys.exit(run_suite("DataLoader Checkpoint Test Suite", __doc__, run))
