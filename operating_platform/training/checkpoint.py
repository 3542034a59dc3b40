"""Training checkpoints: params, optimizer state, step and every process's data-loader state.

A checkpoint is the directory `step_XXXXXXXX/`; it is assembled under a hidden
`.partial` name and renamed into place only when complete, so after a crash at any
moment the latest `step_*` directory is whole and a resumed run continues exactly
(same parameters, same optimizer moments, same next batch). With several
processes, each writes its own data-loader state into the directory being
assembled and process 0 commits it after a barrier.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from operating_platform.dataset.format import fsync_dir, write_bytes_atomic, write_json_atomic

from .gather import LocalCollective

_STEP_RE = re.compile(r"^step_(\d{8})$")
DATALOADER_DIR = "dataloader"


class CheckpointError(RuntimeError):
    """A checkpoint is missing or incomplete."""


@dataclass
class TrainCheckpoint:
    step: int
    params: dict[str, np.ndarray]
    opt_state: dict[str, np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)
    batches_seen: int | None = None


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise CheckpointError(f"{path}: missing (incomplete checkpoint?)")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


class CheckpointManager:
    def __init__(self, directory: str | Path, keep: int = 3, collective=None):
        if keep < 1:
            raise ValueError(f"CheckpointManager: keep must be >= 1, got {keep}")
        self.directory = Path(directory)
        self.keep = keep
        self.collective = collective or LocalCollective()

    def step_dir(self, step: int) -> Path:
        return self.directory / f"step_{step:08d}"

    def steps(self) -> list[int]:
        if not self.directory.exists():
            return []
        return sorted(int(m.group(1)) for p in self.directory.iterdir() if (m := _STEP_RE.match(p.name)) and p.is_dir())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, params, opt_state, data_loader=None, metadata: dict | None = None) -> Path:
        """Collective: every process calls it at the same step."""
        lead = self.collective.process_index == 0
        final = self.step_dir(step)
        partial = self.directory / f".{final.name}.partial"
        if lead:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
        self.collective.barrier()
        if data_loader is not None:
            data_loader.save_dataloader_state(partial / DATALOADER_DIR)
        self.collective.barrier()
        if lead:
            write_bytes_atomic(partial / "params.npz", _npz_bytes(params))
            write_bytes_atomic(partial / "opt_state.npz", _npz_bytes(opt_state))
            meta = {"step": step, "process_count": self.collective.process_count, **(metadata or {})}
            write_json_atomic(partial / "meta.json", meta)
            if final.exists():  # re-saving a step (e.g. a rerun): the complete new one replaces it
                shutil.rmtree(final)
            os.replace(partial, final)
            fsync_dir(self.directory)
            for old in self.steps()[: -self.keep]:
                shutil.rmtree(self.step_dir(old), ignore_errors=True)
        self.collective.barrier()
        return final

    def restore(self, step: int | None = None, data_loader=None) -> TrainCheckpoint:
        """The checkpoint at `step` (default: latest); also restores `data_loader` when given."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"No checkpoint found in {self.directory}")
        path = self.step_dir(step)
        if not path.is_dir():
            raise CheckpointError(f"No checkpoint found in {path}")
        meta_path = path / "meta.json"
        if not meta_path.exists():
            raise CheckpointError(f"{meta_path}: missing (incomplete checkpoint)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        ckpt = TrainCheckpoint(step, _load_npz(path / "params.npz"), _load_npz(path / "opt_state.npz"), meta)
        if data_loader is not None:
            ckpt.batches_seen = data_loader.load_dataloader_state(path / DATALOADER_DIR)
        return ckpt
