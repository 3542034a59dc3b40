"""The console's clean-up finds every process of its session by the marker its dora processes pass on."""

import os
import subprocess
import sys

from operating_platform.core.launcher import SESSION_ENV, _session_processes


def test_processes_of_a_session_are_found_by_their_environment_marker(tmp_path):
    mine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            env={**os.environ, SESSION_ENV: str(tmp_path)})
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             env={**os.environ, SESSION_ENV: f"{tmp_path}-other"})
    try:
        found = _session_processes(str(tmp_path))
        assert mine.pid in found and other.pid not in found and os.getpid() not in found
    finally:
        for proc in (mine, other):
            proc.kill()
            proc.wait()
