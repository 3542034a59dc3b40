"""The data loader's checkpoint: a few numbers per process, restorable in O(1).

Because the sample order is a pure function of (dataset size, seed, epoch) (see
sampler.py), the whole position of a loader is "how many batches this process has
handed out". Each process writes its own small JSON file; a loader restoring from
them checks that the files describe the same dataset, seed and order, and maps the
global stream position onto its own batch counter (which also allows a different
process count when the position falls on one of its batch boundaries).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

from operating_platform.dataset.format import write_json_atomic

from .sampler import StreamLayout

STATE_VERSION = 1
_FILE_PATTERN = "dataloader_state_process_{process_index:05d}.json"
_FILE_RE = re.compile(r"dataloader_state_process_(\d{5})\.json$")


class DataLoaderStateError(RuntimeError):
    """A data-loader checkpoint is missing, unreadable, or belongs to another dataset/order."""


@dataclass(frozen=True)
class LoaderState:
    dataset_fingerprint: str
    num_samples: int
    seed: int
    shuffle: bool
    num_epochs: int | None
    drop_last: bool
    batch_size: int
    process_index: int
    process_count: int
    batches_seen: int
    version: int = STATE_VERSION

    @property
    def global_position(self) -> int:
        """Samples of the stream consumed by all processes together."""
        return self.batches_seen * self.batch_size * self.process_count

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_file(cls, path: Path) -> "LoaderState":
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(**raw)
        except (OSError, json.JSONDecodeError, TypeError) as e:
            raise DataLoaderStateError(f"{path}: not a readable data-loader state ({e})") from e


def state_path(directory: Path | str, process_index: int) -> Path:
    return Path(directory) / _FILE_PATTERN.format(process_index=process_index)


def save_state(directory: Path | str, state: LoaderState) -> Path:
    path = state_path(directory, state.process_index)
    write_json_atomic(path, state.to_json())
    return path


def find_state(directory: Path | str, process_index: int) -> LoaderState:
    """This process's file, or (after a change of process count) any other process's file."""
    directory = Path(directory)
    own = state_path(directory, process_index)
    if own.exists():
        return LoaderState.from_file(own)
    others = sorted(p for p in directory.glob("dataloader_state_process_*.json") if _FILE_RE.search(p.name))
    if not others:
        raise FileNotFoundError(f"No checkpoint found in {directory}")
    states = [LoaderState.from_file(p) for p in others]
    positions = {s.global_position for s in states}
    if len(positions) > 1:
        raise DataLoaderStateError(
            f"{directory}: the process state files disagree on the stream position ({sorted(positions)}); "
            "they were not saved at the same step"
        )
    return states[0]


def resume_batch(saved: LoaderState, layout: StreamLayout, fingerprint: str, where: Path | str) -> int:
    """The batch number `layout` must continue from, or a clear refusal."""
    if saved.version != STATE_VERSION:
        raise DataLoaderStateError(f"{where}: state version {saved.version}, this loader reads {STATE_VERSION}")
    mismatches = [
        (name, old, new)
        for name, old, new in (
            ("dataset fingerprint", saved.dataset_fingerprint, fingerprint),
            ("num_samples", saved.num_samples, layout.num_samples),
            ("seed", saved.seed, layout.seed),
            ("shuffle", saved.shuffle, layout.shuffle),
            ("num_epochs", saved.num_epochs, layout.num_epochs),
        )
        if old != new
    ]
    if mismatches:
        detail = "; ".join(f"{name}: checkpoint has {old!r}, loader has {new!r}" for name, old, new in mismatches)
        raise DataLoaderStateError(
            f"{where}: the data-loader state was written for another dataset or order ({detail})"
        )
    position = saved.global_position
    if position % layout.global_batch_size:
        raise DataLoaderStateError(
            f"{where}: cannot resume exactly: the checkpoint stopped at stream position {position} "
            f"({saved.process_count} processes x batch {saved.batch_size} x {saved.batches_seen} batches), "
            f"which is not a multiple of the new global batch {layout.process_count} x {layout.batch_size}"
        )
    if (layout.drop_last != saved.drop_last) and layout.num_epochs is not None:
        raise DataLoaderStateError(f"{where}: drop_last differs (checkpoint {saved.drop_last}, loader {layout.drop_last})")
    return position // layout.global_batch_size
