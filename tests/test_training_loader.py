"""The data loader: deterministic batches, exact resume at any point, clear refusals."""

import itertools
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from training_fixtures import FailingDataset, JitteryDataset

from operating_platform.training.loader import PERSISTENT_REQUIRED, DataLoaderWorkerError, create_data_loader
from operating_platform.training.loader_state import DataLoaderStateError, state_path
from operating_platform.training.reference.mock import MockDataset
from operating_platform.training.sources import ConcatDataset, batches_equal

SMALL = dict(num_samples=37, image_hw=(8, 8), action_horizon=4, max_token_len=8)


def small(seed=0, **kw):
    return MockDataset(seed=seed, **{**SMALL, **kw})


def take(loader, n):
    return take_from(iter(loader), n)


def take_from(it, n):
    return [next(it) for _ in range(n)]


def same(xs, ys):
    return len(xs) == len(ys) and all(batches_equal(x, y) for x, y in zip(xs, ys))


@given(
    batch=st.integers(1, 9),
    seed=st.integers(0, 1000),
    stop=st.integers(0, 30),
    processes=st.integers(1, 3),
    load_after_iter=st.booleans(),
    data=st.data(),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_resume_is_exact_at_random_points(tmp_path_factory, batch, seed, stop, processes, load_after_iter, data):
    """Shuffled, multi-epoch, any process: restored batches equal the uninterrupted run's."""
    process = data.draw(st.integers(0, processes - 1))
    ds = small()
    make = lambda: create_data_loader(ds, batch, seed=seed, process_index=process, process_count=processes, persistent_iterator=True)  # noqa: E731
    reference = take(make(), stop + 5)
    first = make()
    take(first, stop)
    state_dir = tmp_path_factory.mktemp("state")
    first.save_dataloader_state(state_dir)
    second = make()
    if load_after_iter:
        take(second, 2)
    assert second.load_dataloader_state(state_dir) == stop
    assert same(take(second, 5), reference[stop:])
    assert second.get_batches_seen() == stop + 5


@given(
    batch=st.integers(1, 9),
    seed=st.integers(0, 1000),
    stop=st.integers(0, 30),
    epochs=st.sampled_from([None, 3]),
    persistent=st.booleans(),
)
@settings(max_examples=30, deadline=None)
def test_iterator_state_is_a_plain_value_that_resumes_exactly(batch, seed, stop, epochs, persistent):
    """get_state() of one iterator, set_state() on a fresh one: the identical remaining batches."""
    make = lambda: create_data_loader(small(), batch, seed=seed, num_epochs=epochs, persistent_iterator=persistent)  # noqa: E731
    reference = list(itertools.islice(iter(make()), stop + 6))
    first = iter(make())
    stop = len(list(itertools.islice(first, stop)))  # a finite stream may end first
    state = first.get_state()
    assert json.loads(json.dumps(state)) == state and len(json.dumps(state)) < 512  # small, JSON-ready, no data
    fresh = iter(make())
    take_from(fresh, 3)  # a position of its own, overwritten
    fresh.set_state(json.loads(json.dumps(state)))
    assert fresh.batches_seen == stop
    assert same(list(itertools.islice(fresh, 6)), reference[stop:])
    assert first.get_state() == state  # reading the state does not move the iterator


def test_iterator_state_with_workers_counts_handed_out_batches_only(worker_loaders):
    reference = take(create_data_loader(small(), 4, seed=11), 9)
    a, b = (iter(loader) for loader in worker_loaders)
    a.set_state(iter(create_data_loader(small(), 4, seed=11)).get_state())  # batch 0
    assert same(take_from(a, 4), reference[:4])  # more than 4 batches are in flight by now
    state = a.get_state()
    assert state["batches_seen"] == 4
    take_from(b, 1)
    b.set_state(state)
    assert same(take_from(b, 5), reference[4:])


def test_iterator_refuses_a_foreign_state_without_moving():
    it = iter(create_data_loader(small(), 4, seed=0))
    take_from(it, 2)
    foreign = iter(create_data_loader(small(), 4, seed=1)).get_state()
    with pytest.raises(DataLoaderStateError, match="seed: checkpoint has 1, loader has 0"):
        it.set_state(foreign)
    with pytest.raises(DataLoaderStateError, match="not a data-loader state"):
        it.set_state({"batches_seen": 3})
    assert it.batches_seen == 2


@pytest.fixture(scope="module")
def worker_loaders():
    """Two persistent loaders with 2 workers each over a jittery source (pools reused by the test)."""
    loaders = [
        create_data_loader(JitteryDataset(small()), 4, seed=11, num_workers=2, prefetch=2, persistent_iterator=True)
        for _ in range(2)
    ]
    yield loaders
    for loader in loaders:
        loader.close()


@given(stop=st.integers(0, 40), length=st.integers(1, 6))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_resume_with_workers_and_prefetch_is_exact(worker_loaders, tmp_path_factory, stop, length):
    reference = take(create_data_loader(small(), 4, seed=11, persistent_iterator=True), stop + length)
    a, b = worker_loaders
    start_dir, stop_dir = tmp_path_factory.mktemp("start"), tmp_path_factory.mktemp("stop")
    create_data_loader(small(), 4, seed=11, persistent_iterator=True).save_dataloader_state(start_dir)
    a.load_dataloader_state(start_dir)  # back to batch 0, discarding a's in-flight prefetches
    assert same(take(a, stop), reference[:stop])
    a.save_dataloader_state(stop_dir)
    take(b, 1)  # b has prefetched batches of its old position in flight
    b.load_dataloader_state(stop_dir)
    assert same(take(b, length), reference[stop:])


def test_workers_match_in_process_batches():
    ds = small()
    reference = take(create_data_loader(ds, 5, seed=2, num_epochs=2), 15)
    with create_data_loader(JitteryDataset(ds), 5, seed=2, num_epochs=2, num_workers=2, prefetch=3) as loader:
        got = list(loader)
    assert len(got) == len(loader) == 15
    assert same(got, reference)


def test_state_is_small_and_per_process(tmp_path):
    for p in range(2):
        loader = create_data_loader(small(), 4, process_index=p, process_count=2, persistent_iterator=True)
        take(loader, 3)
        loader.save_dataloader_state(tmp_path)
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == [state_path(tmp_path, 0).name, state_path(tmp_path, 1).name]
    assert all(f.stat().st_size < 1024 for f in files)
    assert json.loads(files[1].read_text())["process_index"] == 1


def test_non_persistent_loader_refuses_checkpoint_calls(tmp_path):
    loader = create_data_loader(small(), 4)
    for call in (lambda: loader.save_dataloader_state(tmp_path), lambda: loader.load_dataloader_state(tmp_path), loader.get_batches_seen):
        with pytest.raises(RuntimeError, match=PERSISTENT_REQUIRED):
            call()


def test_missing_checkpoint_is_reported(tmp_path):
    loader = create_data_loader(small(), 4, persistent_iterator=True)
    with pytest.raises(FileNotFoundError, match=f"No checkpoint found in {tmp_path}"):
        loader.load_dataloader_state(tmp_path)


@pytest.mark.parametrize(
    "other, field",
    [
        (dict(seed=1), "seed"),
        (dict(dataset_seed=9), "dataset fingerprint"),
        (dict(shuffle=False), "shuffle"),
        (dict(num_epochs=3), "num_epochs"),
    ],
)
def test_state_for_another_dataset_or_order_is_refused(tmp_path, other, field):
    saved = create_data_loader(small(), 4, seed=0, persistent_iterator=True)
    take(saved, 2)
    saved.save_dataloader_state(tmp_path)
    dataset_seed = other.pop("dataset_seed", 0)
    loader = create_data_loader(small(dataset_seed), 4, persistent_iterator=True, **{"seed": 0, **other})
    with pytest.raises(DataLoaderStateError, match=field):
        loader.load_dataloader_state(tmp_path)
    assert loader.get_batches_seen() == 0  # nothing half-applied


def test_corrupt_state_file_names_the_file(tmp_path):
    path = state_path(tmp_path, 0)
    path.write_text("{not json")
    with pytest.raises(DataLoaderStateError, match=str(path)):
        create_data_loader(small(), 4, persistent_iterator=True).load_dataloader_state(tmp_path)


def test_other_process_count_resumes_at_the_same_global_position(tmp_path):
    ds = small()
    shards = [create_data_loader(ds, 3, seed=4, process_index=p, process_count=2, persistent_iterator=True) for p in range(2)]
    for s in shards:
        take(s, 4)
        s.save_dataloader_state(tmp_path)
    following = np.concatenate([take(s, 1)[0]["index"] for s in shards])
    merged = create_data_loader(ds, 6, seed=4, persistent_iterator=True)
    assert merged.load_dataloader_state(tmp_path) == 4
    assert np.array_equal(take(merged, 1)[0]["index"], following)
    # 4 batches x 2 processes x 3 = 24 samples: not a multiple of 3 processes x 5
    refused = create_data_loader(ds, 5, seed=4, process_index=2, process_count=3, persistent_iterator=True)
    with pytest.raises(DataLoaderStateError, match="cannot resume exactly"):
        refused.load_dataloader_state(tmp_path)


def test_worker_exception_names_the_batch_and_indices():
    ds = FailingDataset(small(), bad_index=int(create_data_loader(small(), 4, seed=3).layout.batch_indices(2)[1]))
    with create_data_loader(ds, 4, seed=3, num_workers=2) as loader:
        it = iter(loader)
        next(it), next(it)  # the batches before the bad one arrive, whenever its error comes in
        for _ in range(2):  # and the error does not turn into a hang on retry
            with pytest.raises(DataLoaderWorkerError, match=r"batch 2 .*sample \d+ is corrupt"):
                next(it)


def test_dead_worker_is_reported_not_waited_for():
    ds = FailingDataset(small(), bad_index=int(create_data_loader(small(), 4, seed=3).layout.batch_indices(0)[0]), exit_process=True)
    with create_data_loader(ds, 4, seed=3, num_workers=1) as loader:
        with pytest.raises(DataLoaderWorkerError, match="died with exit code 3"):
            next(iter(loader))


def test_finite_loader_ends_and_new_iterators_restart():
    loader = create_data_loader(small(), 10, num_epochs=2, shuffle=False)
    batches = list(loader)
    assert len(batches) == len(loader) == 8  # 74 samples
    assert np.array_equal(np.concatenate([b["index"] for b in batches]), np.tile(np.arange(37), 2))
    assert same(list(loader), batches)


def test_infinite_loader_has_no_length():
    with pytest.raises(TypeError, match="infinite"):
        len(create_data_loader(small(), 4))


def test_concat_dataset_maps_indices_and_checks_shapes():
    a, b = small(0), small(1, num_samples=5)
    both = ConcatDataset([a, b])
    assert len(both) == 42
    assert batches_equal(both[40], b[3]) and batches_equal(both[2], a[2])
    assert both.fingerprint() != ConcatDataset([b, a]).fingerprint()
    with pytest.raises(ValueError, match="dataset #1"):
        ConcatDataset([a, small(2, image_hw=(4, 4))])
    loader = create_data_loader([a, b], 7, num_epochs=1)
    assert sorted(np.concatenate([x["index"] for x in loader]).tolist()) == sorted(list(range(37)) + list(range(5)))


def test_state_files_saved_at_different_steps_are_refused_when_merging(tmp_path):
    ds = small()
    for p, batches in ((0, 2), (1, 3)):
        loader = create_data_loader(ds, 3, process_index=p, process_count=2, persistent_iterator=True)
        take(loader, batches)
        loader.save_dataloader_state(tmp_path)
    third = create_data_loader(ds, 2, process_index=2, process_count=3, persistent_iterator=True)  # has no file of its own
    with pytest.raises(DataLoaderStateError, match="disagree"):
        third.load_dataloader_state(tmp_path)
