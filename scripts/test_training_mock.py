#!/usr/bin/env python
"""Mock training run: real loader, optimizer, checkpoints and hard-example tracking,
with a tiny numpy model, so the training infrastructure is tested in seconds.

    python scripts/test_training_mock.py [--num_train_steps 200 --batch_size 32 --log_interval 20
        --hard_example_log_interval 100 --max_hard_examples_buffer 50] [--no_hard_examples]
        [--checkpoint_dir DIR] [--resume] [--num_processes N] [--wandb]

Exits non-zero if training produced a non-finite loss, the hard-example buffer broke
its invariants, or the final checkpoint does not restore to the final parameters.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import sys
from pathlib import Path

import numpy as np

from operating_platform.training.checkpoint import CheckpointManager
from operating_platform.training.gather import LocalCollective, TcpCollective, free_port
from operating_platform.training.harness import TrainConfig, train
from operating_platform.training.hard_examples import HardExampleTracker
from operating_platform.training.loader import create_data_loader
from operating_platform.training.mock import MockDataset, MockModel
from operating_platform.training.optim import Adam

RULE = "=" * 80


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num_train_steps", type=int, default=100)
    p.add_argument("--batch_size", type=int, default=16, help="per process")
    p.add_argument("--log_interval", type=int, default=10)
    p.add_argument("--hard_example_log_interval", type=int, default=50)
    p.add_argument("--max_hard_examples_buffer", type=int, default=50)
    p.add_argument("--no_hard_examples", action="store_true")
    p.add_argument("--checkpoint_dir", default="/tmp/mock_training_checkpoints")
    p.add_argument("--save_interval", type=int, default=50)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --checkpoint_dir")
    p.add_argument("--num_processes", type=int, default=1, help="data-parallel processes on this machine")
    p.add_argument("--num_workers", type=int, default=0, help="data-loader worker processes per process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--learning_rate", type=float, default=1e-2)
    p.add_argument("--wandb", action="store_true", help="also log hard examples to the active wandb run, if wandb is installed")
    args = p.parse_args(argv)
    for name in ("num_train_steps", "batch_size", "log_interval", "hard_example_log_interval",
                 "max_hard_examples_buffer", "save_interval", "num_processes"):
        if getattr(args, name) <= 0:
            p.error(f"--{name} must be positive")
    return args


def lang_action_text(tokenizer):
    def text_fn(batch, row):
        tokens, mask = batch["tokenized_langact"][row], batch["tokenized_langact_mask"][row]
        return {"lang_action": tokenizer.decode(tokens, mask), "prompt": batch["task"][row], "num_tokens": str(int(mask.sum()))}
    return text_fn


def entry_text(entry) -> str:
    return f"lang_action={entry['lang_action']} (len={entry['num_tokens']})"


def check_buffer(tracker: HardExampleTracker) -> list[str]:
    buffer = tracker.buffer
    losses = [e.loss for e in buffer]
    problems = []
    if len(buffer) > tracker.max_hard_examples:
        problems.append(f"hard-example buffer holds {len(buffer)} > max {tracker.max_hard_examples}")
    if losses != sorted(losses, reverse=True):
        problems.append("hard-example buffer is not sorted by loss")
    if {e.key for e in buffer} != tracker.keys:
        problems.append("hard-example keys do not match the buffer")
    return problems


def run_process(args: argparse.Namespace, process_index: int, port: int | None) -> int:
    collective = (
        TcpCollective(process_index, args.num_processes, ("127.0.0.1", port), timeout=120.0)
        if args.num_processes > 1 else LocalCollective()
    )
    lead = process_index == 0
    say = print if lead else (lambda *_: None)
    dataset = MockDataset(num_samples=4096, seed=args.seed)
    loader = create_data_loader(
        dataset, args.batch_size, shuffle=True, seed=args.seed, process_index=process_index,
        process_count=args.num_processes, num_workers=args.num_workers, persistent_iterator=True,
    )
    say("Initializing mock model and training state...")
    model = MockModel(dataset.tokenizer.vocab_size, state_dim=dataset.state_dim, max_token_len=dataset.max_token_len)
    params = model.init(args.seed)
    tracker = None
    if not args.no_hard_examples:
        say("Initializing hard example tracker...")
        tracker = HardExampleTracker(
            max_hard_examples=args.max_hard_examples_buffer, resize_hw=(64, 64),
            log_interval=args.hard_example_log_interval, text_fn=lang_action_text(dataset.tokenizer),
            process_index=process_index,
        )
    config = TrainConfig(
        num_train_steps=args.num_train_steps, log_interval=args.log_interval, save_interval=args.save_interval,
        checkpoint_dir=args.checkpoint_dir, resume=True, use_wandb=args.wandb,
    )
    say("Starting training loop...")
    problems = []
    try:
        history = train(model, params, Adam(args.learning_rate), loader, config, collective=collective,
                        tracker=tracker, entry_text=entry_text)
        if any(not np.isfinite(r["loss"]) for r in history):
            problems.append("non-finite loss")
        if tracker is not None:
            problems += check_buffer(tracker)
        if lead and history:
            manager = CheckpointManager(args.checkpoint_dir)
            restored = manager.restore()
            if restored.step != history[-1]["step"] + 1:
                problems.append(f"latest checkpoint is step {restored.step}, expected {history[-1]['step'] + 1}")
    finally:
        loader.close()
        collective.close()
    for problem in problems:
        print(f"✗ process {process_index}: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _child(args, process_index, port, results):
    try:
        results.put((process_index, run_process(args, process_index, port)))
    except BaseException as e:
        print(f"✗ process {process_index} failed: {type(e).__name__}: {e}", file=sys.stderr)
        results.put((process_index, 1))
        raise


def prepare_checkpoint_dir(args) -> None:
    path = Path(args.checkpoint_dir)
    if args.resume or not path.exists():
        return
    stale = [p for p in path.iterdir() if p.name.startswith(("step_", ".step_", "metrics_process")) or p.name == "hard_examples"]
    for p in stale:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    if stale:
        print(f"Starting fresh: removed {len(stale)} old checkpoint files from {path} (--resume continues instead)")


def main(argv=None) -> int:
    args = parse_args(argv)
    print(RULE)
    print("MOCK TRAINING TEST")
    print(RULE)
    print("Configuration:")
    print(f"  Steps: {args.num_train_steps}")
    print(f"  Batch size: {args.batch_size}")
    print(f"  Log interval: {args.log_interval}")
    print(f"  Track hard examples: {not args.no_hard_examples}")
    print(f"  Checkpoint dir: {args.checkpoint_dir}")
    print(f"  Processes: {args.num_processes}")
    print(RULE)
    prepare_checkpoint_dir(args)
    if args.num_processes == 1:
        status = run_process(args, 0, None)
    else:
        ctx = mp.get_context("spawn")
        port, results = free_port(), ctx.Queue()
        procs = [ctx.Process(target=_child, args=(args, i, port, results)) for i in range(args.num_processes)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        codes = {}
        while not results.empty():
            index, code = results.get()
            codes[index] = code
        status = 0 if all(codes.get(i) == 0 and p.exitcode == 0 for i, p in enumerate(procs)) else 1
    print(RULE)
    print("Training complete!" if status == 0 else "✗ TRAINING TEST FAILED")
    print(RULE)
    return status


if __name__ == "__main__":
    sys.exit(main())
