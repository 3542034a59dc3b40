"""What the data loader reads: any indexable source of sample dicts, alone or concatenated.

A source has `len()`, `source[i] -> dict` and `fingerprint() -> str` (what a
data-loader checkpoint is checked against, so a state is never applied to other data).
The LeRobot reader, the mock dataset and ConcatDataset are all sources.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class SampleSource(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...

    def fingerprint(self) -> str: ...


class ConcatDataset:
    """Several sources read as one; they must produce the same keys with the same shapes."""

    def __init__(self, sources: Sequence[SampleSource]):
        if not sources:
            raise ValueError("ConcatDataset: no datasets given")
        for pos, src in enumerate(sources):
            if not isinstance(src, SampleSource):
                raise TypeError(f"ConcatDataset: dataset #{pos} ({type(src).__name__}) lacks len/getitem/fingerprint")
            if len(src) == 0:
                raise ValueError(f"ConcatDataset: dataset #{pos} ({src!r}) is empty")
        self.sources = list(sources)
        self._ends = np.cumsum([len(s) for s in self.sources])
        self._check_compatible()

    def _check_compatible(self) -> None:
        first = _shapes(self.sources[0][0])
        for pos, src in enumerate(self.sources[1:], 1):
            other = _shapes(src[0])
            if other != first:
                diff = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))
                raise ValueError(
                    f"ConcatDataset: dataset #{pos} ({src!r}) does not match dataset #0 in {diff}: "
                    + ", ".join(f"{k}: {first.get(k)} vs {other.get(k)}" for k in diff)
                )

    def __len__(self) -> int:
        return int(self._ends[-1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"ConcatDataset: index {index} out of range [0, {len(self)})")
        which = int(np.searchsorted(self._ends, index, side="right"))
        start = 0 if which == 0 else int(self._ends[which - 1])
        return self.sources[which][index - start]

    def fingerprint(self) -> str:
        return hashlib.sha256("|".join(s.fingerprint() for s in self.sources).encode()).hexdigest()[:32]

    def __repr__(self) -> str:
        return f"ConcatDataset({self.sources!r})"


def _shapes(sample: dict[str, Any]) -> dict[str, tuple]:
    return {k: (np.asarray(v).dtype.str, np.shape(v)) if not isinstance(v, str) else ("str",) for k, v in sample.items()}


def as_source(datasets: SampleSource | Sequence[SampleSource]) -> SampleSource:
    if isinstance(datasets, (list, tuple)):
        return datasets[0] if len(datasets) == 1 else ConcatDataset(datasets)
    return datasets


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into a batch: arrays gain a leading batch axis, strings become lists."""
    if not samples:
        raise ValueError("collate: empty batch")
    batch: dict[str, Any] = {}
    for key, value in samples[0].items():
        values = [s[key] for s in samples]
        batch[key] = list(values) if isinstance(value, str) else np.stack([np.asarray(v) for v in values])
    return batch


def batches_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Bit-for-bit equality of two batches or samples (same keys, dtypes, shapes and bytes)."""
    if a.keys() != b.keys():
        return False
    for key, x in a.items():
        y = b[key]
        if isinstance(x, (list, str)) or isinstance(y, (list, str)):
            if x != y:
                return False
            continue
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            return False
    return True
