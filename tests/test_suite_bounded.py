"""The suite's own guard: a test that hangs fails in bounded time, on its reruns too."""

import subprocess
import sys
import time

from e2e_helpers import REPO

HANGING = '''
import time, pytest

@pytest.mark.flaky(reruns=2)
@pytest.mark.timeout(1)
def test_hangs():
    time.sleep(120)
'''


def test_a_hanging_test_times_out_on_every_rerun(tmp_path):
    (tmp_path / "test_hang.py").write_text(HANGING)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(REPO / "pyproject.toml"),
                             "--rootdir", str(tmp_path), str(tmp_path / "test_hang.py")],
                            capture_output=True, text=True, timeout=100)
    assert result.returncode == 1, result.stdout
    assert "1 failed, 2 rerun" in result.stdout and "Timeout" in result.stdout, result.stdout
    assert time.monotonic() - started < 60
