"""The sample order: a bijection per epoch, sharded disjointly and completely."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operating_platform.training.sampler import EpochPermutation, StreamLayout


@given(n=st.integers(1, 3000), seed=st.integers(0, 2**32), epoch=st.integers(0, 10**6))
@settings(max_examples=60, deadline=None)
def test_epoch_permutation_is_a_bijection(n, seed, epoch):
    out = EpochPermutation(n, seed, epoch)(np.arange(n))
    assert np.array_equal(np.sort(out), np.arange(n))


def test_permutation_depends_on_seed_and_epoch_and_is_reproducible():
    base = EpochPermutation(1000, 1, 0)(np.arange(1000))
    assert np.array_equal(base, EpochPermutation(1000, 1, 0)(np.arange(1000)))
    assert not np.array_equal(base, EpochPermutation(1000, 2, 0)(np.arange(1000)))
    assert not np.array_equal(base, EpochPermutation(1000, 1, 1)(np.arange(1000)))
    assert not np.array_equal(base, np.arange(1000))  # actually shuffled


def test_permutation_rejects_out_of_range_offsets():
    with pytest.raises(IndexError):
        EpochPermutation(10, 0, 0)(np.array([10]))


@given(
    n=st.integers(1, 200),
    batch=st.integers(1, 17),
    processes=st.integers(1, 4),
    epochs=st.integers(1, 3),
    shuffle=st.booleans(),
)
@settings(max_examples=80, deadline=None)
def test_processes_cover_every_epoch_disjointly_and_completely(n, batch, processes, epochs, shuffle):
    layouts = [StreamLayout(n, batch, seed=5, shuffle=shuffle, num_epochs=epochs, process_index=p, process_count=processes)
               for p in range(processes)]
    per_position = {}
    for lay in layouts:
        for b in range(lay.num_batches()):
            positions, indices = lay.batch_positions(b), lay.batch_indices(b)
            assert len(positions) == len(indices) > 0
            for pos, idx in zip(positions.tolist(), indices.tolist()):
                assert pos not in per_position  # disjoint
                per_position[pos] = idx
        assert lay.batch_indices(lay.num_batches()).size == 0
    assert sorted(per_position) == list(range(n * epochs))  # complete
    stream = np.array([per_position[p] for p in range(n * epochs)]).reshape(epochs, n)
    for epoch_order in stream:
        assert np.array_equal(np.sort(epoch_order), np.arange(n))


def test_drop_last_keeps_only_full_global_batches():
    lay = StreamLayout(10, 3, num_epochs=1, process_count=2, process_index=1, drop_last=True)
    assert lay.num_batches() == 1
    assert lay.batch_indices(0).size == 3


def test_infinite_stream_has_no_end_and_far_positions_are_cheap():
    lay = StreamLayout(10**6, 32, seed=3)
    assert lay.num_batches() is None
    far = lay.batch_indices(10**9)
    assert far.shape == (32,) and far.min() >= 0 and far.max() < 10**6


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_samples": 0, "batch_size": 1}, "empty"),
        ({"num_samples": 5, "batch_size": 0}, "batch_size"),
        ({"num_samples": 5, "batch_size": 1, "process_index": 2, "process_count": 2}, "process_index"),
        ({"num_samples": 5, "batch_size": 1, "num_epochs": 0}, "num_epochs"),
    ],
)
def test_bad_layouts_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StreamLayout(**kwargs)
