#!/usr/bin/env python
"""Data-loader checkpointing, the basics: save, restore, continue identically.

    python scripts/tests/test_dataloader_checkpoint_simple.py --config-name=sim_small

Exits non-zero (with the failed check) when anything differs.
"""

from __future__ import annotations

import sys

from checkpoint_common import FACTS, CheckFailed, LoaderFactory, check, checkpoint_root, passed, run_suite, shapes_line, state_size

from operating_platform.dataset.format import ACTION_KEY, STATE_KEY
from operating_platform.training.loader import PERSISTENT_REQUIRED
from operating_platform.training.sources import batches_equal

N = 5


def run(args) -> None:
    make = LoaderFactory(args.config_name)
    with checkpoint_root(args.checkpoint_dir) as root:
        run_steps(make, root)


def run_steps(make: LoaderFactory, root) -> None:
    print("\nStep 1: Creating dataloader with persistent_iterator=True...")
    loader = make()
    passed("Dataloader created successfully")

    print(f"\nStep 2: Iterating through {N} batches...")
    it = iter(loader)
    for i in range(N):
        batch = next(it)
        print(f"  Batch {i + 1}: {shapes_line(batch)}")
        FACTS.setdefault("batch_shapes", {key: list(batch[key].shape) for key in (STATE_KEY, ACTION_KEY)})
    check(loader.get_batches_seen() == N, f"get_batches_seen() is {loader.get_batches_seen()}, expected {N}")
    passed(f"Successfully processed {N} batches")

    print("\nStep 3: Saving checkpoint...")
    state_dir = root / "dataloader"
    loader.save_dataloader_state(state_dir)
    passed(f"Checkpoint saved to {state_dir} ({state_size(state_dir)} bytes)")

    print(f"\nStep 4: Recording the next {N} batches of the original dataloader...")
    expected = [next(it) for _ in range(N)]
    loader.close()
    passed(f"Recorded batches {N + 1}-{2 * N}")

    print("\nStep 5: Loading checkpoint into a new dataloader...")
    restored = make()
    seen = restored.load_dataloader_state(state_dir)
    check(seen == N, f"load_dataloader_state returned {seen}, expected {N}")
    FACTS["batches_seen_restored"] = seen
    passed(f"Checkpoint loaded (batches_seen={seen})")

    print("\nStep 6: Continuing iteration from restored state...")
    it = iter(restored)
    for i, want in enumerate(expected):
        got = next(it)
        check(batches_equal(got, want), f"batch {N + i + 1} after restore differs from the original run")
        print(f"  Batch {N + i + 1}: {shapes_line(got)} (identical)")
    check(restored.get_batches_seen() == 2 * N, f"get_batches_seen() is {restored.get_batches_seen()}, expected {2 * N}")
    restored.close()
    passed("Restored dataloader continues exactly where the original stopped")

    print("\nStep 7: Error handling for non-persistent iterators...")
    plain = make(persistent_iterator=False)
    for action in (lambda: plain.save_dataloader_state(root / "unused"), lambda: plain.load_dataloader_state(state_dir)):
        try:
            action()
        except RuntimeError as e:
            check(PERSISTENT_REQUIRED in str(e), f"unexpected error text: {e}")
        else:
            raise CheckFailed("a non-persistent dataloader accepted save/load")
    passed(f"Raised: {PERSISTENT_REQUIRED}")
    empty = root / "empty"
    empty.mkdir(exist_ok=True)
    try:
        make().load_dataloader_state(empty)
    except FileNotFoundError as e:
        check("No checkpoint found in" in str(e), f"unexpected error text: {e}")
        passed(f"Raised: {e}")
    else:
        raise CheckFailed("loading from an empty directory did not fail")


if __name__ == "__main__":
    sys.exit(run_suite("DataLoader Checkpoint Test", __doc__, run))
