"""The keyboard node: relays the operator's keys into the dataflow through a Unix domain socket.

dora-spawned nodes cannot read the terminal (they are not in its foreground process group),
and dora 1.1 logs an ERROR for every declared `path: dynamic` node, so the `keyboard` node is
spawned like the others and a terminal program connects to it instead: `python
nodes/keyboard.py`, or the console (core/main.py). Each running dataflow has one socket and a
sidecar JSON (uuid, folder, name, pid) in a directory private to the user, by which a client
picks the dataflow it is meant for (core/join.py).

The protocol is JSON lines. Client -> relay: `{"key": "n"}`. Relay -> client:
`{"input": "recorder_status" | "saver_status", "value": "<the status JSON>"}`; a client that
connects is first sent the latest status of each. The relay never holds up the dataflow: it
polls its sockets without blocking, drops a client that stops reading, and exits when the
recorder's and the saver's status streams have closed.
"""

from __future__ import annotations

import json
import os
import select
import socket
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa

from .messages import KEYS, encode_key

FORWARDED = ("recorder_status", "saver_status")  # the relay's inputs, passed on to every client
MAX_FRAME = 64 * 1024  # longest line either side accepts; a status is a few KB
MAX_OUTBOX = 4 * 1024 * 1024  # bytes queued for a client that does not read; past this it is dropped
MAX_LOGGED = 5  # invalid client messages logged one by one; the rest are only counted
FLUSH_S = 1.0  # at exit, how long queued status may take to reach the clients


class RelayDirError(RuntimeError):
    """The relay directory is not private to this user (wrong owner or mode, or not a directory)."""


def relay_dir(env: dict | None = None) -> Path:
    """$XDG_RUNTIME_DIR/operating_platform, else /tmp/operating_platform-<uid>."""
    env = os.environ if env is None else env
    runtime = env.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "operating_platform" if runtime else Path(f"/tmp/operating_platform-{os.getuid()}")


def private_dir(path: Path, create: bool = True) -> Path:
    """`path`, made (mode 0700) if missing; refused unless it is a real directory of ours that nobody else may enter."""
    if create:
        try:
            path.mkdir(mode=0o700, parents=False)
        except FileExistsError:
            pass
        except FileNotFoundError:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.mkdir(mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise RelayDirError(f"{path} is not a directory private to uid {os.getuid()} (mode {stat.filemode(info.st_mode)}, "
                            f"owner {info.st_uid}); remove it")
    return path


@dataclass(frozen=True)
class RelayEntry:
    """A running relay as its sidecar describes it."""

    uuid: str
    folder: str  # where the dataflow was started (the nodes' working directory)
    name: str
    pid: int
    socket: str

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def sidecar_path(directory: Path, uuid: str) -> Path:
    return directory / f"{uuid}.json"


def running_relays(directory: Path | None = None) -> list[RelayEntry]:
    """The relays whose sidecar is in `directory` and whose process lives (stale entries are gone)."""
    directory = relay_dir() if directory is None else directory
    try:
        private_dir(directory, create=False)
    except FileNotFoundError:
        return []
    found = []
    for path in sorted(directory.glob("*.json")):
        try:
            entry = RelayEntry(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue  # being written, or not ours
        if entry.alive():
            found.append(entry)
    return found


def frame(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


class FrameReader:
    """Splits a byte stream into JSON-object lines; a bad line is reported, never raised."""

    def __init__(self):
        self._buffer = b""
        self._skipping = False  # inside a line that was too long

    def feed(self, data: bytes) -> list[dict | str]:
        """Decoded objects, and for each bad line a string saying what is wrong with it."""
        self._buffer += data
        out: list[dict | str] = []
        while True:
            line, newline, rest = self._buffer.partition(b"\n")
            if not newline and len(line) <= MAX_FRAME:
                return out
            self._buffer = rest if newline else b""
            if len(line) > MAX_FRAME and not self._skipping:
                out.append(f"line longer than {MAX_FRAME} bytes")
            elif not self._skipping:
                try:
                    obj = json.loads(line)
                except ValueError as exc:
                    out.append(f"not JSON ({exc}): {line[:60]!r}")
                else:
                    out.append(obj if isinstance(obj, dict) else f"not a JSON object: {line[:60]!r}")
            self._skipping = not newline  # the rest of an over-long line is skipped up to its end


class _Client:
    def __init__(self, conn: socket.socket, number: int):
        self.conn = conn
        self.number = number
        self.reader = FrameReader()
        self.outbox = bytearray()


class KeyRelay:
    """The keyboard node's logic: keys from socket clients out on `key`; status inputs out to the clients.

    Driven by the node's events: every input (a status, or the node's `tick` timer) services the
    sockets without blocking, so keys go out within a tick.
    """

    def __init__(self, emit: Callable[[str, object, dict], None], dataflow_id: str, folder: Path,
                 directory: Path | None = None, say: Callable[[str], None] = lambda text: print(text, flush=True)):
        self.emit = emit
        self.say = say
        self.directory = relay_dir() if directory is None else directory
        # dora tells a node no dataflow name: core/join.py asks the coordinator for `dora start --name`s
        self.entry = RelayEntry(uuid=str(dataflow_id), folder=str(folder), name="", pid=os.getpid(),
                                socket=str(self.directory / f"{dataflow_id}.sock"))
        self.latest: dict[str, bytes] = {}
        self.clients: list[_Client] = []
        self.closed_inputs: set[str] = set()
        self.invalid = 0
        self._connections = 0
        self._listener: socket.socket | None = None

    # ------------------------------------------------------------------ lifetime

    def open(self) -> None:
        """Listen and publish the sidecar; a relay that cannot listen says so once and runs without clients."""
        path = Path(self.entry.socket)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bound = False
        try:
            private_dir(self.directory)
            path.unlink(missing_ok=True)  # a previous relay of this uuid was killed
            listener.bind(str(path))
            bound = True
            os.chmod(path, 0o600)
            listener.listen(8)
            listener.setblocking(False)
            sidecar = sidecar_path(self.directory, self.entry.uuid)
            partial = sidecar.with_suffix(".json.partial")
            partial.write_text(json.dumps(asdict(self.entry)))
            os.chmod(partial, 0o600)
            partial.replace(sidecar)  # a client never reads half a sidecar
        except (OSError, RelayDirError) as exc:
            listener.close()
            if bound:
                path.unlink(missing_ok=True)
            self.say(f"[keyboard] no keys this run: cannot listen for a keyboard on {path} ({exc})")
            return
        self._listener = listener
        self.say(f"[keyboard] keys: run `python nodes/keyboard.py` in {self.entry.folder} (dataflow {self.entry.uuid})")

    def close(self) -> None:
        """Hand the clients what is queued (bounded by FLUSH_S), hang up, remove socket and sidecar."""
        for client in list(self.clients):
            if client.outbox:
                try:
                    client.conn.settimeout(FLUSH_S)
                    client.conn.sendall(client.outbox)
                except OSError:
                    pass
            client.conn.close()
        self.clients.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            Path(self.entry.socket).unlink(missing_ok=True)
            sidecar_path(self.directory, self.entry.uuid).unlink(missing_ok=True)
        if self.invalid > MAX_LOGGED:
            self.say(f"[keyboard] ignored {self.invalid} invalid messages in all")

    def __enter__(self) -> "KeyRelay":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def done(self) -> bool:
        """The recorder and the saver have exited: nothing more to relay."""
        return self.closed_inputs >= set(FORWARDED)

    # ------------------------------------------------------------------ dora side

    def on_input(self, input_id: str, value, metadata: dict) -> None:
        if input_id in FORWARDED:
            text = _one_string(value)
            if text is None:
                self._invalid(f"{input_id} from dora is not a one-element string array")
            else:
                line = frame({"input": input_id, "value": text})
                self.latest[input_id] = line
                for client in list(self.clients):
                    self._queue(client, line)
        self.serve()

    def on_closed(self, input_id: str) -> None:
        self.closed_inputs.add(input_id)

    def on_stop(self) -> None:
        """dora's STOP (Ctrl-C on `dora run`, `dora stop`): what the recorder and the saver still send
        while they finish is passed on, until both have closed or dora ends the event stream."""

    # ------------------------------------------------------------------ socket side

    def serve(self) -> None:
        """Accept, read keys, write status: whatever the sockets allow now, never waiting."""
        if self._listener is None:
            return
        readable = [self._listener] + [c.conn for c in self.clients]
        writable = [c.conn for c in self.clients if c.outbox]
        try:
            ready, can_write, _ = select.select(readable, writable, [], 0)
        except (OSError, ValueError):
            return
        by_conn = {c.conn: c for c in self.clients}
        if self._listener in ready:
            self._accept()
        for conn in ready:
            if conn in by_conn:
                self._read(by_conn[conn])
        for conn in can_write:
            client = by_conn.get(conn)
            if client in self.clients:
                self._write(client)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.say(f"[keyboard] could not accept a keyboard: {exc}")
                return
            conn.setblocking(False)
            self._connections += 1
            client = _Client(conn, self._connections)
            self.clients.append(client)
            self.say(f"[keyboard] keyboard {client.number} connected")
            for input_id in FORWARDED:
                if input_id in self.latest:
                    self._queue(client, self.latest[input_id])

    def _read(self, client: _Client) -> None:
        try:
            data = client.conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client, "disconnected")
            return
        for item in client.reader.feed(data):
            if isinstance(item, str):
                self._invalid(f"keyboard {client.number}: {item}")
            elif set(item) != {"key"} or item["key"] not in KEYS:
                self._invalid(f"keyboard {client.number}: {json.dumps(item)[:80]} is not {{\"key\": one of {', '.join(KEYS)}}}")
            else:
                self.emit("key", encode_key(item["key"]), {})

    def _queue(self, client: _Client, line: bytes) -> None:
        client.outbox += line
        if len(client.outbox) > MAX_OUTBOX:
            self._drop(client, f"dropped: it read none of the last {MAX_OUTBOX // 1024} KiB of status")
            return
        self._write(client)

    def _write(self, client: _Client) -> None:
        try:
            sent = client.conn.send(client.outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(client, "disconnected")
            return
        del client.outbox[:sent]

    def _drop(self, client: _Client, why: str) -> None:
        if client in self.clients:
            self.clients.remove(client)
            client.conn.close()
            self.say(f"[keyboard] keyboard {client.number} {why}")

    def _invalid(self, why: str) -> None:
        self.invalid += 1
        if self.invalid <= MAX_LOGGED:
            more = " (further ones are only counted)" if self.invalid == MAX_LOGGED else ""
            self.say(f"[keyboard] ignored invalid message #{self.invalid}: {why}{more}")


def _one_string(value) -> str | None:
    if isinstance(value, pa.Array) and value.type in (pa.string(), pa.large_string()) and len(value) == 1 and value[0].is_valid:
        return value[0].as_py()
    return None


class RelayGone(ConnectionError):
    """The relay is not there any more (its dataflow ended or was killed): a stale entry."""


class RelayClient:
    """A terminal program's end of the socket: events shaped like dora's, keys out with send_key().

    next() gives `{"type": "INPUT", "id": "recorder_status", "value": <one-element string array>}`
    for each status, `{"type": "TIMEOUT"}` when none came within `timeout`, None once the relay
    hung up (the dataflow ended).
    """

    def __init__(self, entry: RelayEntry, connect_timeout_s: float = 5.0):
        self.entry = entry
        self.conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.conn.settimeout(connect_timeout_s)
        try:
            self.conn.connect(entry.socket)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            self.conn.close()
            raise RelayGone(f"dataflow {entry.uuid} is gone ({exc.strerror})") from None
        except OSError:
            self.conn.close()
            raise
        self.reader = FrameReader()
        self.pending: list[dict] = []
        self.ended = False
        self.invalid: list[str] = []  # what the relay sent that was not a status frame

    def next(self, timeout: float | None = None) -> dict | None:
        if not self.pending and not self.ended:
            self._receive(timeout)
        if self.pending:
            return self.pending.pop(0)
        return None if self.ended else {"type": "TIMEOUT"}

    def _receive(self, timeout: float | None) -> None:
        ready, _, _ = select.select([self.conn], [], [], timeout)
        if not ready:
            return
        try:
            data = self.conn.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.ended = True
            return
        for item in self.reader.feed(data):
            if isinstance(item, dict) and item.get("input") in FORWARDED and isinstance(item.get("value"), str):
                self.pending.append({"type": "INPUT", "id": item["input"], "value": pa.array([item["value"]]), "metadata": {}})
            else:
                self.invalid.append(str(item)[:200])

    def send_key(self, key: str) -> None:
        """Hand a key to the relay (it publishes it on `key`); a relay that is gone is not an error here:
        next() reports the end."""
        try:
            self.conn.settimeout(5.0)
            self.conn.sendall(frame({"key": key}))
        except OSError:
            pass

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "RelayClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
