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
    """Where one process's batch stream stands: the dataset, its layout, and batches handed out.

    Its plain form (to_json) is the flat JSON object of the state files, and what
    the iterator's get_state()/set_state() exchange."""

    dataset_fingerprint: str
    layout: StreamLayout
    batches_seen: int
    version: int = STATE_VERSION

    @property
    def global_position(self) -> int:
        """Samples of the stream consumed by all processes together."""
        return self.batches_seen * self.layout.global_batch_size

    def to_json(self) -> dict:
        return {"dataset_fingerprint": self.dataset_fingerprint, **dataclasses.asdict(self.layout),
                "batches_seen": self.batches_seen, "version": self.version}

    @classmethod
    def from_json(cls, raw: dict) -> "LoaderState":
        try:
            fields = dict(raw)
            version = fields.pop("version", STATE_VERSION)
            if version != STATE_VERSION:
                raise DataLoaderStateError(f"state version {version}, this loader reads {STATE_VERSION}")
            fingerprint, batches_seen = fields.pop("dataset_fingerprint"), fields.pop("batches_seen")
            return cls(fingerprint, StreamLayout(**fields), int(batches_seen), version)
        except (KeyError, TypeError, ValueError) as e:
            raise DataLoaderStateError(f"not a data-loader state ({type(e).__name__}: {e})") from e

    @classmethod
    def from_file(cls, path: Path) -> "LoaderState":
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise DataLoaderStateError(f"{path}: not a readable data-loader state ({e})") from e
        try:
            return cls.from_json(raw)
        except DataLoaderStateError as e:
            raise DataLoaderStateError(f"{path}: {e}") from e


def state_path(directory: Path | str, process_index: int) -> Path:
    return Path(directory) / _FILE_PATTERN.format(process_index=process_index)


def save_state(directory: Path | str, state: dict) -> Path:
    """Write a plain state (an iterator's get_state()) as this process's file."""
    path = state_path(directory, LoaderState.from_json(state).layout.process_index)
    write_json_atomic(path, state)
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


def resume_batch(saved: LoaderState, layout: StreamLayout, fingerprint: str) -> int:
    """The batch number `layout` must continue from, or a clear refusal."""
    old = saved.layout
    mismatches = [("dataset fingerprint", saved.dataset_fingerprint, fingerprint)] if saved.dataset_fingerprint != fingerprint else []
    mismatches += [
        (name, getattr(old, name), getattr(layout, name))
        for name in ("num_samples", "seed", "shuffle", "num_epochs")
        if getattr(old, name) != getattr(layout, name)
    ]
    if mismatches:
        detail = "; ".join(f"{name}: checkpoint has {was!r}, loader has {now!r}" for name, was, now in mismatches)
        raise DataLoaderStateError(f"the data-loader state was written for another dataset or order ({detail})")
    position = saved.global_position
    if position % layout.global_batch_size:
        raise DataLoaderStateError(
            f"cannot resume exactly: the checkpoint stopped at stream position {position} "
            f"({old.process_count} processes x batch {old.batch_size} x {saved.batches_seen} batches), "
            f"which is not a multiple of the new global batch {layout.process_count} x {layout.batch_size}"
        )
    if (layout.drop_last != old.drop_last) and layout.num_epochs is not None:
        raise DataLoaderStateError(f"drop_last differs (checkpoint {old.drop_last}, loader {layout.drop_last})")
    return position // layout.global_batch_size
