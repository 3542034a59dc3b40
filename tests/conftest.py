"""Shared pytest set-up: the `slow` marker is skipped unless --run-slow is given (CI passes it),
the `workdir` fixture for tests that start processes, `repo_module` for scripts and benchmarks the tests
drive, and every test run outside the checkout."""

import os
import signal
import time

import pytest

from e2e_helpers import load_repo_module, processes_mentioning


def pytest_addoption(parser):
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="also run tests marked slow (real dora dataflows, crash matrix, long encodes)",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True)
def _never_real_time():
    """A test that leaves pytest real-time (SVT-AV1 does so to the thread opening an encoder, as root)
    fails here, and pytest is put back: real-time busy loops forked later would starve the machine."""
    yield
    if hasattr(os, "sched_getscheduler") and os.sched_getscheduler(0) != os.SCHED_OTHER:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        pytest.fail("this test left pytest's main thread with a real-time scheduling policy")


@pytest.fixture(autouse=True)
def _outside_the_checkout(tmp_path_factory, monkeypatch):
    """Every test runs in an empty folder of its own, so relative defaults (data/<repo_id>) never see
    what a user recorded in the checkout (e.g. the README's `dora run dataflow.yml` -> data/sim_demo)."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="session")
def repo_module():
    """`repo_module("scripts/x.py")`: that file imported as a module (scripts/ and benchmarks/ are no packages)."""
    return load_repo_module


@pytest.fixture
def workdir(tmp_path):
    """A tmp dir; afterwards no process started for it may survive (leftovers are killed, and fail the test)."""
    yield tmp_path
    deadline = time.monotonic() + 15
    while (leftover := processes_mentioning(str(tmp_path))) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in leftover:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not leftover, f"processes left behind: {leftover}"
