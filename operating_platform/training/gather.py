"""Collectives between training processes: gather to process 0, all-gather, barrier.

Process 0 is a hub on a TCP port (loopback for one machine, any address for
several); every other process keeps one connection to it. Each collective is
numbered, so a process that skipped or repeated one is reported instead of
silently mixing rounds, and a process that never shows up is reported by index
after `timeout` seconds instead of hanging the others. Payloads are pickled: this
is for cooperating processes of one training job, not an untrusted network.
"""

from __future__ import annotations

import pickle
import socket
import struct
import time
from typing import Any

_HEADER = struct.Struct("!Q")


class CollectiveError(RuntimeError):
    """A peer is missing, late, out of step, or disconnected."""


class LocalCollective:
    """The single-process case: every collective is the identity."""

    process_index = 0
    process_count = 1

    def gather(self, obj: Any) -> list[Any]:
        return [obj]

    def allgather(self, obj: Any) -> list[Any]:
        return [obj]

    def barrier(self) -> None:
        pass

    def close(self) -> None:
        pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _send(sock: socket.socket, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks, remaining = [], n
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            raise ConnectionError("connection closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _recv(sock: socket.socket) -> Any:
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    return pickle.loads(_recv_exact(sock, size))


class TcpCollective:
    """Collectives over TCP with process 0 as hub. Create one in every process."""

    def __init__(self, process_index: int, process_count: int, address: tuple[str, int], timeout: float = 60.0):
        if not 0 <= process_index < process_count:
            raise ValueError(f"TcpCollective: process_index={process_index} not in [0, {process_count})")
        self.process_index = process_index
        self.process_count = process_count
        self.timeout = timeout
        self._round = 0
        self._peers: dict[int, socket.socket] = {}
        self._hub: socket.socket | None = None
        if process_count == 1:
            return
        if process_index == 0:
            self._accept_peers(address)
        else:
            self._connect(address)

    def _accept_peers(self, address: tuple[str, int]) -> None:
        server = socket.create_server(address, reuse_port=False)
        deadline = time.monotonic() + self.timeout
        try:
            while len(self._peers) < self.process_count - 1:
                server.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    conn, _ = server.accept()
                except socket.timeout:
                    missing = sorted(set(range(1, self.process_count)) - set(self._peers))
                    raise CollectiveError(
                        f"process 0: processes {missing} did not connect to {address[0]}:{address[1]} within {self.timeout}s"
                    ) from None
                conn.settimeout(self.timeout)
                peer = _recv(conn)
                if not isinstance(peer, int) or not 0 < peer < self.process_count or peer in self._peers:
                    conn.close()
                    raise CollectiveError(f"process 0: unexpected hello {peer!r} from a peer")
                self._peers[peer] = conn
        finally:
            server.close()

    def _connect(self, address: tuple[str, int]) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                sock = socket.create_connection(address, timeout=self.timeout)
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    raise CollectiveError(
                        f"process {self.process_index}: cannot reach process 0 at {address[0]}:{address[1]} ({e})"
                    ) from e
                time.sleep(0.05)
        sock.settimeout(self.timeout)
        _send(sock, self.process_index)
        self._hub = sock

    def _exchange(self, obj: Any, broadcast: bool) -> list[Any] | None:
        self._round += 1
        if self.process_count == 1:
            return [obj]
        if self.process_index != 0:
            self._io(lambda: _send(self._hub, (self._round, obj)), 0)
            if not broadcast:
                return None
            return self._io(lambda: _recv(self._hub), 0)
        gathered = [obj]
        for peer in range(1, self.process_count):
            round_no, value = self._io(lambda: _recv(self._peers[peer]), peer)
            if round_no != self._round:
                raise CollectiveError(
                    f"process {peer} is at collective #{round_no}, process 0 at #{self._round} (processes out of step)"
                )
            gathered.append(value)
        if broadcast:
            for peer in range(1, self.process_count):
                self._io(lambda: _send(self._peers[peer], gathered), peer)
        return gathered

    def _io(self, fn, peer: int):
        try:
            return fn()
        except socket.timeout:
            raise CollectiveError(
                f"process {self.process_index}: process {peer} did not take part in collective #{self._round} "
                f"within {self.timeout}s"
            ) from None
        except (ConnectionError, OSError) as e:
            raise CollectiveError(
                f"process {self.process_index}: lost connection to process {peer} in collective #{self._round} ({e})"
            ) from e

    def gather(self, obj: Any) -> list[Any] | None:
        """Every process's obj, in process order, on process 0; None elsewhere."""
        return self._exchange(obj, broadcast=False)

    def allgather(self, obj: Any) -> list[Any]:
        return self._exchange(obj, broadcast=True)

    def barrier(self) -> None:
        self._exchange(None, broadcast=True)

    def close(self) -> None:
        for sock in [*self._peers.values(), *([self._hub] if self._hub else [])]:
            sock.close()
        self._peers.clear()
        self._hub = None

    def __enter__(self) -> "TcpCollective":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
