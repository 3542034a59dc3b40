"""Start and stop a dataflow with the dora CLI, leaving no process behind.

By default a private coordinator and daemon are started on free ports, so several
consoles (or test runs) on one machine never meet; with an address, a running
`dora up` is used instead. Every process started here is in its own process
group and is terminated (then killed) in `close()`, whatever happened before.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

DEFAULT_COORDINATOR_PORT = 6013
SESSION_ENV = "OPERATING_PLATFORM_SESSION"  # marks the processes of one console session
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class LaunchError(RuntimeError):
    """dora could not be started or refused the dataflow; the text carries dora's own message."""


def dora_binary() -> str:
    """The dora CLI next to this Python (the venv's), else the one on PATH."""
    candidate = Path(sys.executable).with_name("dora")
    found = str(candidate) if candidate.exists() else shutil.which("dora")
    if not found:
        raise LaunchError("the dora CLI is not installed (pip install dora-rs-cli==1.1.*)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, timeout_s: float, proc: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LaunchError(f"{what} exited with code {proc.returncode}; see {log}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise LaunchError(f"{what} did not listen on port {port} within {timeout_s:.0f} s; see {log}")


class DoraLauncher:
    def __init__(self, run_dir: Path, coordinator: str = ""):
        self.run_dir = Path(run_dir)
        self.dora = dora_binary()
        self.private = not coordinator
        host, _, port = coordinator.partition(":")
        self.coordinator_addr = host or "127.0.0.1"
        self.coordinator_port = int(port) if port else DEFAULT_COORDINATOR_PORT
        self.daemon_port: int | None = None  # private daemon's local listen port
        self.dataflow_id: str | None = None
        self._procs: list[subprocess.Popen] = []

    def _cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        cmd = [self.dora, *args, "--coordinator-addr", self.coordinator_addr,
               "--coordinator-port", str(self.coordinator_port)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.run_dir)

    def _spawn(self, name: str, args: list[str]) -> tuple[subprocess.Popen, Path]:
        log = self.run_dir / f"{name}.log"
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env[SESSION_ENV] = str(self.run_dir)  # inherited by every node the daemon spawns: see close()
        with open(log, "wb") as out:
            proc = subprocess.Popen([self.dora, *args], stdout=out, stderr=subprocess.STDOUT, cwd=self.run_dir,
                                    env=env, start_new_session=True)
        self._procs.append(proc)
        return proc, log

    def up(self, timeout_s: float = 30.0, say: Callable[[str], None] = lambda step: None) -> None:
        """Private mode: a coordinator and a daemon of our own, on free ports. `say` hears each step."""
        if not self.private:
            say(f"using the dora coordinator at {self.coordinator_addr}:{self.coordinator_port}")
            return
        self.coordinator_port, self.daemon_port = free_port(), free_port()
        say(f"starting a private dora coordinator (port {self.coordinator_port})")
        coordinator, log = self._spawn("coordinator", ["coordinator", "--port", str(self.coordinator_port),
                                                       "--store", "memory", "--quiet"])
        _wait_for_port(self.coordinator_port, timeout_s, coordinator, "dora coordinator", log)
        say(f"starting a private dora daemon (port {self.daemon_port})")
        # No multicast scouting: this daemon and its nodes meet only each other, never another
        # dataflow on the machine (or the network).
        daemon, log = self._spawn("daemon", ["daemon", "--coordinator-port", str(self.coordinator_port),
                                             "--local-listen-port", str(self.daemon_port), "--zenoh-no-multicast",
                                             "--zenoh-listen", f"127.0.0.1:{free_port()}"])
        _wait_for_port(self.daemon_port, timeout_s, daemon, "dora daemon", log)
        say("waiting for the daemon to register with the coordinator")
        deadline = time.monotonic() + timeout_s
        while "Daemon: Running" not in self.status(timeout_s):
            if time.monotonic() > deadline:
                raise LaunchError(f"the dora daemon did not register with the coordinator; see {log}")
            time.sleep(0.1)

    def status(self, timeout_s: float = 30.0) -> str:
        """`dora status` of the coordinator in use (coordinator/daemon health, active dataflows)."""
        return self._cli("status", timeout=timeout_s).stdout

    def start(self, dataflow: Path, name: str, env: dict[str, str] | None = None) -> str:
        overrides = [arg for key, value in (env or {}).items() for arg in ("--env", f"{key}={value}")]
        result = self._cli("start", str(dataflow), "--name", name, "--detach", *overrides)
        match = UUID.search(result.stdout + result.stderr)
        if result.returncode != 0 or not match:
            message = (result.stderr or result.stdout).strip().splitlines()
            raise LaunchError(f"dora start {dataflow} failed: {message[-1] if message else result.returncode}")
        self.dataflow_id = match.group(0)
        return self.dataflow_id

    def node_states(self, dataflow_name: str) -> dict[str, str]:
        """{node id: dora's status (Running, Unknown, ...)} of one dataflow, from `dora node list`."""
        result = self._cli("node", "list", timeout=15)
        states = {}
        for line in result.stdout.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 2 and fields[-1] == dataflow_name:
                states[fields[0]] = fields[1]
        return states

    def wait_for_nodes(self, dataflow_name: str, nodes: list[str], timeout_s: float) -> bool:
        """Until every one of `nodes` runs (True) or timeout_s passes (False); polled, so the console's
        start-up progress keeps counting meanwhile."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            states = self.node_states(dataflow_name)
            if all(states.get(node) == "Running" for node in nodes):
                return True
            time.sleep(0.3)
        return False

    def is_running(self) -> bool:
        if self.dataflow_id is None:
            return False
        listing = self._cli("list", timeout=15).stdout
        return any(self.dataflow_id in line and "Running" in line for line in listing.splitlines())

    def stop(self, grace_s: float = 10.0) -> None:
        """Ask the dataflow to stop (nodes get STOP); dora kills what is still alive after the grace."""
        if self.dataflow_id is not None and self.is_running():
            self._cli("stop", self.dataflow_id, "--grace-duration", f"{grace_s:g}s", timeout=grace_s * 2 + 10)

    def close(self) -> None:
        """Tear down: private coordinator/daemon (and so every node) terminated, then killed."""
        if self.private and self._procs:
            try:
                self._cli("down", "--force", timeout=15)
            except subprocess.TimeoutExpired:
                pass
        for proc in self._procs:
            _terminate_group(proc)
        if self._procs:  # nodes still starting (importing) when the daemon went do not notice it: end them too
            for pid in _session_processes(str(self.run_dir)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._procs.clear()


def _session_processes(run_dir: str) -> list[int]:
    """Processes carrying this session's marker in their environment (our coordinator's, daemon's and nodes)."""
    marker = f"{SESSION_ENV}={run_dir}\0".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker in Path(f"/proc/{pid}/environ").read_bytes() + b"\0" and int(pid) != os.getpid():
                found.append(int(pid))
        except OSError:
            continue
    return found


def _terminate_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM the process group (the leader may be gone while its children live), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
