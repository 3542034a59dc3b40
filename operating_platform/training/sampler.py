"""Which dataset index the loader reads at every position of the sample stream.

The stream is the concatenation of one shuffled pass over the dataset per epoch.
The order of epoch `e` is a keyed bijection of [0, N) (a Feistel network with
cycle-walking) keyed by (seed, e), so the index at any stream position is computed
directly: restoring a loader after a million batches costs the same as after ten,
and nothing is read or skipped to get there. The stream is cut into global batches
of `batch_size * process_count` samples; process p takes the p-th slice of each, so
the processes cover every epoch completely and disjointly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_FEISTEL_ROUNDS = 6
_U64 = np.uint64


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a cheap, well-spread keyed round function (uint64 wraps by design)."""
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


class EpochPermutation:
    """A pseudo-random bijection of [0, n) that needs O(1) memory and O(1) time per index."""

    def __init__(self, n: int, seed: int, epoch: int):
        if n <= 0:
            raise ValueError(f"EpochPermutation: dataset size must be positive, got {n}")
        self.n = int(n)
        bits = max(2, int(n - 1).bit_length())
        self._half_bits = (bits + 1) // 2  # balanced halves: domain 4**half_bits < 4n
        self._mask = _U64((1 << self._half_bits) - 1)
        self._keys = np.random.SeedSequence([int(seed), int(epoch), 0x5EED]).generate_state(
            _FEISTEL_ROUNDS, dtype=np.uint64
        )

    def _feistel(self, x: np.ndarray) -> np.ndarray:
        shift = _U64(self._half_bits)
        left, right = x >> shift, x & self._mask
        for key in self._keys:
            left, right = right, left ^ (_mix64(right ^ key) & self._mask)
        return (left << shift) | right

    def __call__(self, offsets: np.ndarray) -> np.ndarray:
        """Permuted index of each offset in [0, n). Cycle-walking keeps the result in range."""
        offsets = np.asarray(offsets, dtype=np.int64)
        if offsets.size and (offsets.min() < 0 or offsets.max() >= self.n):
            raise IndexError(f"EpochPermutation: offsets must lie in [0, {self.n})")
        with np.errstate(over="ignore"):
            out = self._feistel(offsets.astype(np.uint64))
            outside = out >= _U64(self.n)
            while outside.any():  # each step lands in range with probability > 1/4
                out[outside] = self._feistel(out[outside])
                outside = out >= _U64(self.n)
        return out.astype(np.int64)


@dataclass(frozen=True)
class StreamLayout:
    """How the sample stream of a dataset of `num_samples` maps onto one process's batches."""

    num_samples: int
    batch_size: int
    seed: int = 0
    shuffle: bool = True
    num_epochs: int | None = None  # None: repeat forever
    process_index: int = 0
    process_count: int = 1
    drop_last: bool = False

    def __post_init__(self):
        if self.num_samples <= 0:
            raise ValueError("data loader: the dataset is empty (0 samples)")
        if self.batch_size <= 0:
            raise ValueError(f"data loader: batch_size must be positive, got {self.batch_size}")
        if self.process_count <= 0 or not 0 <= self.process_index < self.process_count:
            raise ValueError(
                f"data loader: process_index={self.process_index} is not in [0, process_count={self.process_count})"
            )
        if self.num_epochs is not None and self.num_epochs <= 0:
            raise ValueError(f"data loader: num_epochs must be positive or None, got {self.num_epochs}")

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.process_count

    @property
    def total_samples(self) -> int | None:
        return None if self.num_epochs is None else self.num_samples * self.num_epochs

    def num_batches(self) -> int | None:
        """Batches this process yields before the stream ends (None when infinite)."""
        total = self.total_samples
        if total is None:
            return None
        if self.drop_last:
            return total // self.global_batch_size
        first = self.process_index * self.batch_size
        return 0 if total <= first else -(-(total - first) // self.global_batch_size)

    def batch_positions(self, batch: int) -> np.ndarray:
        """Stream positions (global sample counts) that make up this process's batch number `batch`."""
        start = batch * self.global_batch_size + self.process_index * self.batch_size
        positions = np.arange(start, start + self.batch_size, dtype=np.int64)
        total = self.total_samples
        return positions if total is None else positions[positions < total]

    def batch_indices(self, batch: int) -> np.ndarray:
        """Dataset indices of this process's batch number `batch` (empty past the end of the stream)."""
        n_batches = self.num_batches()
        if n_batches is not None and batch >= n_batches:
            return np.empty(0, dtype=np.int64)
        positions = self.batch_positions(batch)
        epochs, offsets = np.divmod(positions, self.num_samples)
        if not self.shuffle:
            return offsets
        out = np.empty_like(offsets)
        for epoch in np.unique(epochs):  # a batch spans at most a few epochs
            sel = epochs == epoch
            out[sel] = EpochPermutation(self.num_samples, self.seed, int(epoch))(offsets[sel])
        return out
