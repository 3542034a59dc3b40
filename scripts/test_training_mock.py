#!/usr/bin/env python
"""Mock training run: real loader, optimizer, checkpoints and hard-example tracking,
with a tiny numpy model, so the training infrastructure is tested in seconds.

    python scripts/test_training_mock.py [--num_train_steps 100 --batch_size 16 --log_interval 10
        --hard_example_log_interval 50 --max_hard_examples_buffer 50] [--no_hard_examples]
        [--dataset data/sim_demo] [--checkpoint_dir DIR] [--resume] [--num_processes N] [--wandb]

Without --dataset it trains on synthetic samples; with it, a small behaviour-cloning
policy trains on a recorded dataset through the real loader (video frames decoded),
and the hard-example contact sheets show its camera frames captioned with loss,
episode, frame and task. Checkpoints, metrics, reports and loss.png go to
--checkpoint_dir (default outputs/mock_training); the paths are printed.

Exits non-zero if training produced a non-finite loss, the hard-example buffer broke
its invariants, or the final checkpoint does not restore to the final parameters.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import sys
from pathlib import Path

import numpy as np

from operating_platform.training.checkpoint import CheckpointManager
from operating_platform.training.gather import LocalCollective, TcpCollective, free_port
from operating_platform.training.hard_example_report import loss_plot, write_png
from operating_platform.training.hard_examples import HardExampleTracker
from operating_platform.training.loader import create_data_loader
from operating_platform.training.reader import LeRobotReader
from operating_platform.training.reference.bc import BCPolicy
from operating_platform.training.reference.harness import TrainConfig, train
from operating_platform.training.reference.mock import MockDataset, MockModel
from operating_platform.training.reference.optim import Adam

RULE = "=" * 80


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num_train_steps", type=int, default=100)
    p.add_argument("--batch_size", type=int, default=16, help="per process")
    p.add_argument("--log_interval", type=int, default=10)
    p.add_argument("--hard_example_log_interval", type=int, default=50)
    p.add_argument("--max_hard_examples_buffer", type=int, default=50)
    p.add_argument("--no_hard_examples", action="store_true")
    p.add_argument("--dataset", help="a recorded LeRobot v2.1 dataset folder to train on (default: synthetic samples)")
    p.add_argument("--action_horizon", type=int, default=8, help="action chunk length (with --dataset)")
    p.add_argument("--checkpoint_dir", default="outputs/mock_training", help="checkpoints, metrics, reports (default: %(default)s)")
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


def recorded_sample_text(batch, row):
    return {"episode": str(int(batch["episode_index"][row])), "frame": str(int(batch["frame_index"][row])),
            "task": str(batch["task"][row])}


def recorded_entry_text(entry) -> str:
    return f"episode={entry['episode']} frame={entry['frame']} task={entry['task']}"


def dataset_and_model(args):
    """(samples, model, hard-example text_fn, entry formatter, image size): synthetic, or a recorded dataset."""
    if args.dataset:
        reader = LeRobotReader(args.dataset, action_horizon=args.action_horizon)
        if not reader.camera_keys:
            print(f"  note: {args.dataset} has no cameras; hard examples get placeholder images")
        return reader, BCPolicy.for_dataset(reader), recorded_sample_text, recorded_entry_text, (240, 320)
    dataset = MockDataset(num_samples=4096, seed=args.seed)
    model = MockModel(dataset.tokenizer.vocab_size, state_dim=dataset.state_dim, max_token_len=dataset.max_token_len)
    return dataset, model, lang_action_text(dataset.tokenizer), entry_text, (64, 64)


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
    dataset, model, text_fn, entry_formatter, image_hw = dataset_and_model(args)
    loader = create_data_loader(
        dataset, args.batch_size, shuffle=True, seed=args.seed, process_index=process_index,
        process_count=args.num_processes, num_workers=args.num_workers, persistent_iterator=True,
    )
    say(f"Initializing {type(model).__name__} and training state...")
    params = model.init(args.seed)
    tracker = None
    if not args.no_hard_examples:
        say("Initializing hard example tracker...")
        tracker = HardExampleTracker(
            max_hard_examples=args.max_hard_examples_buffer, resize_hw=image_hw,
            log_interval=args.hard_example_log_interval, text_fn=text_fn,
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
                        tracker=tracker, entry_text=entry_formatter)
        if any(not np.isfinite(r["loss"]) for r in history):
            problems.append("non-finite loss")
        if tracker is not None:
            problems += check_buffer(tracker)
        if lead and history:
            manager = CheckpointManager(args.checkpoint_dir)
            restored = manager.restore()
            if restored.step != history[-1]["step"] + 1:
                problems.append(f"latest checkpoint is step {restored.step}, expected {history[-1]['step'] + 1}")
            report_outputs(Path(args.checkpoint_dir), restored.step)
    finally:
        loader.close()
        collective.close()
    for problem in problems:
        print(f"✗ process {process_index}: {problem}", file=sys.stderr)
    return 1 if problems else 0


def report_outputs(out_dir: Path, last_step: int) -> None:
    """Draw loss.png from the whole run's metrics (resumed runs included) and say where everything is."""
    records = [json.loads(line) for line in (out_dir / "metrics_process0.jsonl").read_text().splitlines() if line]
    by_step = {r["step"]: r["loss"] for r in records}  # a resumed run rewrites the steps after its checkpoint
    steps = sorted(by_step)
    plot = write_png(loss_plot(steps, [by_step[s] for s in steps]), out_dir / "loss.png")
    sheets = sorted((out_dir / "hard_examples").glob("*.png"))
    print("Outputs:")
    print(f"  Checkpoints: {out_dir.resolve()}/step_* (latest: step {last_step})")
    print(f"  Metrics: {(out_dir / 'metrics_process0.jsonl').resolve()}")
    print(f"  Loss plot: {plot.resolve()}")
    if sheets:
        print(f"  Hard examples: {sheets[-1].resolve()} (+ .jsonl; {len(sheets)} report(s) in {sheets[-1].parent.resolve()})")


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
    stale = [p for p in path.iterdir() if p.name.startswith(("step_", ".step_", "metrics_process")) or p.name in ("hard_examples", "loss.png")]
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
    print(f"  Data: {Path(args.dataset).resolve() if args.dataset else 'synthetic samples'}")
    print(f"  Checkpoint dir: {Path(args.checkpoint_dir).resolve()}")
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
