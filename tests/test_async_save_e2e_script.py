"""The reference end-to-end script (scripts/test_async_save_e2e.py) run by the suite: each of its checks
against real encodes and files, and the script itself as users run it.

Its two timing checks (save_episode() under 500 ms, async > 10x faster than sync) are figures for
benchmarks/bench_save.py, not for a loaded CI machine; their behaviour (the index returned, every
episode committed) is asserted by the other checks here."""

import subprocess
import sys

import pytest
from e2e_helpers import REPO

pytestmark = pytest.mark.slow
SCRIPT = REPO / "scripts" / "test_async_save_e2e.py"
TIMING_CHECKS = {"single_episode_save", "performance_comparison"}


@pytest.fixture(scope="module")
def e2e(repo_module):
    return repo_module("scripts/test_async_save_e2e.py")


def test_the_script_names_every_check_here(e2e):
    assert set(e2e.TESTS) == TIMING_CHECKS | set(CHECKS)


CHECKS = ["rapid_sequential_saves", "exit_during_pending", "queue_overflow", "data_format_validation"]


@pytest.mark.parametrize("name", CHECKS)
def test_check(e2e, name, tmp_path):
    _, check = e2e.TESTS[name]
    check(e2e.Checks(tmp_path, frames=20))  # raises AssertionError naming what went wrong


def test_script_run_as_users_do_exits_0():
    result = subprocess.run([sys.executable, str(SCRIPT), "--test", "exit_during_pending", "--frames", "12"],
                            capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_script_exits_1_when_a_check_fails(tmp_path):
    """--frames 0 records empty episodes, which save_episode() refuses: the run must not report success."""
    result = subprocess.run([sys.executable, str(SCRIPT), "--test", "rapid_sequential_saves", "--frames", "0"],
                            capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
