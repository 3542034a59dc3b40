"""The training loop: data loader -> model -> Adam -> logs, hard examples, checkpoints.

Model-agnostic: a model is anything with compute_loss(params, batch) returning
(mean loss, per-sample losses, gradients, metrics). With several processes the
gradients are averaged in process order (deterministic), each process tracks its
own hard examples and process 0 logs the merged report. Resuming from the latest
checkpoint continues the exact run an uninterrupted job would have made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from operating_platform.training.checkpoint import CheckpointManager
from operating_platform.training.gather import LocalCollective
from operating_platform.training.hard_example_report import log_to_wandb, write_report
from operating_platform.training.hard_examples import HardExampleTracker, gather_hard_examples

from .optim import Adam, Params, global_norm

EntryFormatter = Callable[[dict[str, Any]], str]


@dataclass
class TrainConfig:
    num_train_steps: int = 100
    log_interval: int = 10
    save_interval: int = 50
    checkpoint_dir: str | None = None
    resume: bool = True
    hard_example_dir: str | None = None  # default: <checkpoint_dir>/hard_examples
    use_wandb: bool = False
    summary_top: int = 3  # hard examples printed per report


def default_entry_text(entry: dict[str, Any]) -> str:
    return f"prompt={entry.get('prompt', '')}"


def _average(values: list[Params]) -> Params:
    return {k: (sum(v[k] for v in values) / len(values)).astype(values[0][k].dtype) for k in values[0]}


def format_step_line(step: int, record: dict[str, float]) -> str:
    metrics = [f"{k}={v:.4f}" for k, v in record.items() if k not in ("step", "loss", "grad_norm", "param_norm", "max_per_sample_loss")]
    fields = [f"loss={record['loss']:.4f}", f"grad_norm={record['grad_norm']:.4f}", f"param_norm={record['param_norm']:.4f}", *metrics, f"max_per_sample_loss={record['max_per_sample_loss']:.4f}"]
    return f"Step {step:4d}: " + ", ".join(fields)


def format_hard_examples(payload: dict[str, Any], top: int, entry_text: EntryFormatter) -> list[str]:
    lines = [
        f"  Hard examples: {len(payload['entries'])} entries, threshold={payload['quantile_threshold']:.4f}, "
        f"total_samples={payload['total_samples']}"
    ]
    for rank, e in enumerate(payload["entries"][:top], 1):
        lines.append(f"    #{rank}: loss={e['loss']:.4f}, step={e['step']}, {entry_text(e)}...")
    return lines


def train(
    model,
    params: Params,
    optimizer: Adam,
    loader,
    config: TrainConfig,
    *,
    collective=None,
    tracker: HardExampleTracker | None = None,
    entry_text: EntryFormatter = default_entry_text,
    log: Callable[[str], None] = print,
) -> list[dict[str, float]]:
    """Run (or resume) training; returns this run's per-step records."""
    collective = collective or LocalCollective()
    lead = collective.process_index == 0
    say = log if lead else (lambda _msg: None)
    manager = CheckpointManager(config.checkpoint_dir, collective=collective) if config.checkpoint_dir else None
    if config.checkpoint_dir:
        Path(config.checkpoint_dir).mkdir(parents=True, exist_ok=True)
    start = 0
    opt_state = optimizer.init(params)
    if manager is not None and config.resume and manager.latest_step() is not None:
        ckpt = manager.restore(data_loader=loader)
        start, params, opt_state = ckpt.step, ckpt.params, ckpt.opt_state
        say(f"Resumed from checkpoint step {start} (data loader at batch {ckpt.batches_seen})")
    metrics_path = Path(config.checkpoint_dir) / f"metrics_process{collective.process_index}.jsonl" if config.checkpoint_dir else None
    report_dir = config.hard_example_dir or (str(Path(config.checkpoint_dir) / "hard_examples") if config.checkpoint_dir else None)
    batches = iter(loader)
    history: list[dict[str, float]] = []
    for step in range(start, config.num_train_steps):
        try:
            batch = next(batches)
        except StopIteration:
            say(f"Data exhausted after {step} steps")
            break
        loss, per_sample, grads, metrics = model.compute_loss(params, batch)
        max_loss = float(np.max(per_sample))
        if collective.process_count > 1:
            shared = collective.allgather((grads, loss, metrics, max_loss))
            grads = _average([g for g, *_ in shared])
            loss = float(np.mean([l for _, l, *_ in shared]))
            metrics = {k: float(np.mean([m[k] for *_, m, _ in shared])) for k in metrics}
            max_loss = max(x for *_, x in shared)
        grad_norm = global_norm(grads)
        params, opt_state = optimizer.update(params, grads, opt_state)
        record = {"step": step, "loss": float(loss), "grad_norm": grad_norm, "param_norm": global_norm(params), **metrics, "max_per_sample_loss": max_loss}
        history.append(record)
        if metrics_path is not None:
            with open(metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if step % config.log_interval == 0:
            say(format_step_line(step, record))
        if tracker is not None:
            tracker.update(per_sample)
            base = collective.process_index * len(per_sample)
            tracker.add_local_examples(step, batch, per_sample, global_idx_base=base, process_idx=collective.process_index)
            if tracker.is_log_step(step):
                merged = gather_hard_examples(collective, tracker.log_if_ready(step), tracker.max_hard_examples)
                if merged is not None:
                    for line in format_hard_examples(merged, config.summary_top, entry_text):
                        say(line)
                    if report_dir:
                        write_report(merged, report_dir)
                    log_to_wandb(merged, enabled=config.use_wandb)
        done = step + 1
        if manager is not None and (done % config.save_interval == 0 or done == config.num_train_steps):
            manager.save(done, params, opt_state, loader, metadata={"loss": float(loss)})
    return history
