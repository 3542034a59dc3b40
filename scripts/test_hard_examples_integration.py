#!/usr/bin/env python
"""Hard-example tracking under load: top-K buffer, sorting, keys, image extraction.

    python scripts/test_hard_examples_integration.py [--steps 50 --buffer_size 50 --batch_size 16
        --log_interval 10] [--dataset data/sim_demo] [--output_dir outputs/hard_examples_integration]

Feeds batches and their per-sample losses to HardExampleTracker and checks its
invariants against an independent record of every loss seen: mock batches (64x64
images) by default, or batches of a recorded dataset through the real loader (camera
frames, losses of an untrained behaviour-cloning policy) with --dataset. The final
report (JSONL + contact sheet) goes to --output_dir; its path is printed, and
results.json there records every check's verdict and the totals. Exits non-zero
when any check fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from operating_platform.training.hard_example_report import write_report
from operating_platform.training.hard_examples import HardExampleTracker
from operating_platform.training.loader import create_data_loader
from operating_platform.training.reader import LeRobotReader
from operating_platform.training.reference.bc import BCPolicy
from operating_platform.training.reference.mock import MockDataset, MockModel
from operating_platform.training.sources import collate

RULE, THIN = "=" * 80, "-" * 80
HIGH_LOSS = 4.0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--buffer_size", type=int, default=50)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--log_interval", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", help="a recorded LeRobot v2.1 dataset folder (default: mock batches)")
    p.add_argument("--output_dir", default="outputs/hard_examples_integration", help="report folder (default: %(default)s)")
    args = p.parse_args(argv)
    for name in ("steps", "buffer_size", "batch_size", "log_interval"):
        if getattr(args, name) <= 0:
            p.error(f"--{name} must be positive")
    return args


def print_report(payload: dict, step: int) -> None:
    print(THIN)
    print(f"HARD EXAMPLES AT STEP {step}:")
    print(f"  Total entries: {len(payload['entries'])}")
    print(f"  Quantile threshold: {payload['quantile_threshold']:.4f}")
    print(f"  Interval samples: {payload['total_samples']}")
    for rank, e in enumerate(payload["entries"][:5], 1):
        shape = None if e["image"] is None else tuple(e["image"].shape)
        print(f"    #{rank}: loss={e['loss']:.4f}, process={e['process_index']}, global_idx={e['global_idx']}, image_shape={shape}")
    if len(payload["entries"]) > 5:
        print("    ...")
    print(THIN)


def batch_source(args):
    """(endless batches, model, text_fn or None, image size): mock samples, or a recorded dataset via the real loader."""
    if args.dataset:
        reader = LeRobotReader(args.dataset, action_horizon=8)
        loader = create_data_loader(reader, args.batch_size, shuffle=True, seed=args.seed)

        def text_fn(batch, row):
            return {"episode": str(int(batch["episode_index"][row])), "frame": str(int(batch["frame_index"][row])),
                    "task": str(batch["task"][row])}

        return iter(loader), BCPolicy.for_dataset(reader), text_fn, (240, 320)
    dataset = MockDataset(num_samples=args.steps * args.batch_size, seed=args.seed, image_hw=(64, 64))
    model = MockModel(dataset.tokenizer.vocab_size, dataset.state_dim, dataset.max_token_len)
    rows = (range(step * args.batch_size, (step + 1) * args.batch_size) for step in range(args.steps))
    return (collate([dataset[i] for i in r]) for r in rows), model, None, (64, 64)


def run_checks(tracker: HardExampleTracker, all_losses: np.ndarray, last_payload: dict | None) -> list[tuple[bool, str]]:
    buffer = tracker.buffer
    losses = [e.loss for e in buffer]
    expected_top = np.sort(all_losses)[::-1][: tracker.max_hard_examples]
    images_ok = all(
        e.image is not None and e.image.shape == (*tracker.resize_hw, 3) and e.image.dtype == np.uint8 and e.image_error is None
        for e in buffer
    )
    return [
        (len(buffer) <= tracker.max_hard_examples, "Buffer size constraint satisfied"),
        (losses == sorted(losses, reverse=True), "Buffer correctly sorted by loss"),
        ({e.key for e in buffer} == tracker.keys and len(tracker.keys) == len(buffer), "Keys match buffer entries"),
        (np.allclose(np.asarray(losses), expected_top), "Buffer holds exactly the top-K losses seen"),
        (images_ok, "All buffer entries have valid images"),
        (last_payload is not None and len(last_payload["entries"]) == len(buffer), "Final payload reports the whole buffer"),
    ]


def main(argv=None) -> int:
    args = parse_args(argv)
    print(RULE)
    print("HARD EXAMPLE TRACKING INTEGRATION TEST")
    print(RULE)
    print("Config:")
    print(f"  Steps: {args.steps}")
    print(f"  Batch size: {args.batch_size}")
    print(f"  Buffer size: {args.buffer_size}")
    print(f"  Log interval: {args.log_interval}")
    print("  Process index: 0")
    print("  Process count: 1")
    print(f"  Data: {Path(args.dataset).resolve() if args.dataset else 'mock batches'}")
    print(RULE)
    batches, model, text_fn, image_hw = batch_source(args)
    params = model.init(args.seed)
    tracker = HardExampleTracker(max_hard_examples=args.buffer_size, resize_hw=image_hw, log_interval=args.log_interval,
                                 **({"text_fn": text_fn} if text_fn else {}))
    seen: list[np.ndarray] = []
    payload = None
    for step in range(args.steps):
        batch = next(batches)
        _, losses, _, _ = model.compute_loss(params, batch)
        seen.append(losses)
        tracker.update(losses)
        tracker.add_local_examples(step, batch, losses, global_idx_base=step * args.batch_size, process_idx=0)
        if step % args.log_interval == 0:
            print(f"Step {step:3d}: loss_range=[{losses.min():.2f}, {losses.max():.2f}], "
                  f"high_loss_count={int((losses > HIGH_LOSS).sum())}, buffer_size={len(tracker.buffer)}")
        if tracker.is_log_step(step):
            payload = tracker.log_if_ready(step)
    payload = tracker.log_if_ready(args.steps, force=True) or payload
    written = {}
    if payload is not None:
        print_report(payload, args.steps)
        written = write_report(payload, args.output_dir)
        print(f"Report: {written['jsonl'].resolve()}" + (f"\nContact sheet: {written['png'].resolve()}" if "png" in written else ""))
    all_losses = np.concatenate(seen)
    high = int((all_losses > HIGH_LOSS).sum())
    print(RULE)
    print("TEST COMPLETE")
    print(RULE)
    print("Statistics:")
    print(f"  Total samples seen: {tracker.total_samples}")
    print(f"  Total high-loss samples (>{HIGH_LOSS}): {high}")
    print(f"  High-loss percentage: {100.0 * high / all_losses.size:.2f}%")
    print(f"  Max loss seen: {all_losses.max():.4f}")
    print(f"  Final buffer size: {len(tracker.buffer)}")
    print(f"  Final keys tracked: {len(tracker.keys)}")
    checks = run_checks(tracker, all_losses, payload)
    for ok, text in checks:
        print(f"{'✓' if ok else '✗'} {text}")
    results = {"checks": {text: ok for ok, text in checks}, "total_samples": tracker.total_samples,
               "buffer_size": len(tracker.buffer), "report": {k: str(v.resolve()) for k, v in written.items()}}
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.output_dir) / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(RULE)
    if all(ok for ok, _ in checks):
        print("✅ TEST PASSED")
        return 0
    print("❌ TEST FAILED")
    return 1


if __name__ == "__main__":
    sys.exit(main())
