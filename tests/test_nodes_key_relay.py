"""The keyboard node's relay on dora-shaped events and a real Unix socket: keys in, status out,
bad client input counted and ignored, never holding up the dataflow, leaving nothing behind."""

import json
import shutil
import socket
import stat
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pytest

from operating_platform.dataflow import key_relay
from operating_platform.dataflow.key_relay import KeyRelay, RelayClient, private_dir, running_relays
from operating_platform.dataflow.messages import RecorderStatus, SaverStatus, decode_key, encode_status
from operating_platform.dataflow.runtime import run_events

UUID = "01a2356f-50e0-78bb-8fc7-74a7b0cd93ce"


class Rig:
    def __init__(self, directory):
        self.keys: list[str] = []
        self.said: list[str] = []
        self.relay = KeyRelay(lambda output, value, metadata: self.keys.append((output, decode_key(value))), UUID,
                              directory.parent, directory=directory, say=self.said.append)

    def serve_until(self, condition, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"not within {timeout_s} s; said: {self.said}"
            self.relay.serve()
            time.sleep(0.01)


@pytest.fixture
def short_tmp():
    """A temporary folder with a short path: a Unix socket's path must fit in 108 bytes (pytest's tmp_path may not)."""
    path = Path(tempfile.mkdtemp(prefix="kb", dir="/tmp"))
    yield path
    shutil.rmtree(path)


@pytest.fixture
def rig(short_tmp):
    rig = Rig(short_tmp / "relays")
    rig.relay.open()
    yield rig
    rig.relay.close()


def client_of(rig) -> RelayClient:
    [entry] = running_relays(rig.relay.directory)
    client = RelayClient(entry)
    rig.serve_until(lambda: rig.relay.clients)
    return client


def next_input(client: RelayClient, timeout_s: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while (event := client.next(timeout=0.05)) is not None and event["type"] != "INPUT":
        assert time.monotonic() < deadline, "no status reached the client"
    assert event is not None, "the relay hung up"
    return event


def test_keys_are_published_and_status_reaches_clients_including_late_ones(rig):
    rig.relay.on_input("recorder_status", encode_status(RecorderStatus(phase="recording", episode=1)), {})
    rig.relay.on_input("saver_status", encode_status(SaverStatus(completed=1)), {})
    with client_of(rig) as client:
        first, second = next_input(client), next_input(client)
        assert (first["id"], json.loads(first["value"][0].as_py())["episode"]) == ("recorder_status", 1), "the latest, at once"
        assert second["id"] == "saver_status"
        client.send_key("n")
        client.send_key("e")
        rig.serve_until(lambda: len(rig.keys) == 2)
        assert rig.keys == [("key", "n"), ("key", "e")]
        rig.relay.on_input("recorder_status", encode_status(RecorderStatus(phase="resetting", episode=2)), {})
        assert json.loads(next_input(client)["value"][0].as_py())["phase"] == "resetting"
    assert "[keyboard] keyboard 1 connected" in rig.said


def test_invalid_client_input_is_counted_and_logged_never_fatal(rig, monkeypatch):
    monkeypatch.setattr(key_relay, "MAX_FRAME", 100)
    [entry] = running_relays(rig.relay.directory)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(entry.socket)
        raw.sendall(b"garbage\n[1, 2]\n{\"key\": \"x\"}\n{\"key\": \"n\", \"also\": 1}\n" + b"z" * 300 + b"\n{\"key\": \"r\"}\n")
        rig.serve_until(lambda: rig.keys)
    assert rig.keys == [("key", "r")], "a valid key after the bad ones still goes out"
    assert rig.relay.invalid == 5
    lines = [line for line in rig.said if "ignored invalid message" in line]
    assert len(lines) == 5 and "not JSON" in lines[0] and "not a JSON object" in lines[1] and "longer than 100 bytes" in lines[4]
    assert lines[2].startswith("[keyboard] ignored invalid message #3: keyboard 1: {\"key\": \"x\"} is not {\"key\": one of n, r, p, e}")
    assert "further ones are only counted" in lines[4]
    rig.relay.on_input("recorder_status", pa.array([1, 2]), {})
    assert rig.relay.invalid == 6 and len([line for line in rig.said if "ignored invalid" in line]) == 5


def test_a_client_that_does_not_read_is_dropped_without_holding_up_the_node(rig, monkeypatch):
    monkeypatch.setattr(key_relay, "MAX_OUTBOX", 64 * 1024)
    [entry] = running_relays(rig.relay.directory)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stuck:
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(entry.socket)
        rig.serve_until(lambda: rig.relay.clients)
        started = time.monotonic()
        status = encode_status(RecorderStatus(phase="recording", errors=["x" * 2000]))
        for _ in range(2000):  # ~4 MB, far more than the socket buffers
            rig.relay.on_input("recorder_status", status, {})
        assert time.monotonic() - started < 5 and not rig.relay.clients
    assert any("keyboard 1 dropped: it read none of the last 64 KiB" in line for line in rig.said)


def test_socket_and_sidecar_are_private_and_removed_on_exit(short_tmp):
    tmp_path = short_tmp
    rig = Rig(tmp_path / "relays")
    directory = rig.relay.directory
    with rig.relay:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        sock, sidecar = directory / f"{UUID}.sock", directory / f"{UUID}.json"
        assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600
        described = json.loads(sidecar.read_text())
        assert described["uuid"] == UUID and described["folder"] == str(tmp_path) and described["socket"] == str(sock)
        assert f"run `python nodes/keyboard.py` in {tmp_path}" in rig.said[0]
    assert list(directory.iterdir()) == []


def test_the_node_exits_when_the_recorder_and_saver_have_exited_and_clients_get_the_last_status(rig):
    client = client_of(rig)
    last = encode_status(SaverStatus(done=True, completed=3))
    events = [{"type": "INPUT", "id": "tick", "value": pa.array([]), "metadata": {}},
              {"type": "INPUT", "id": "recorder_status", "value": encode_status(RecorderStatus(phase="done")), "metadata": {}},
              {"type": "STOP", "id": "MANUAL"},  # Ctrl-C on `dora run`: the saver still drains, the terminal sees it
              {"type": "INPUT_CLOSED", "id": "recorder_status"},
              {"type": "INPUT", "id": "saver_status", "value": last, "metadata": {}},
              {"type": "INPUT_CLOSED", "id": "saver_status"},
              {"type": "INPUT", "id": "tick", "value": pa.array([]), "metadata": {}}]  # never reached
    rest = iter(events)
    run_events(rest, rig.relay.on_input, done=lambda: rig.relay.done, on_stop=rig.relay.on_stop, on_closed=rig.relay.on_closed)
    assert rig.relay.done and len(list(rest)) == 1, "it left at once when both had closed"
    rig.relay.close()
    with client:
        assert next_input(client)["id"] == "recorder_status"
        assert json.loads(next_input(client)["value"][0].as_py())["done"] is True
        assert client.next(timeout=1.0) is None, "then the relay hung up: the console's loop ends"
    assert running_relays(rig.relay.directory) == []


def test_with_no_socket_possible_the_relay_says_so_once_and_the_run_goes_on(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    rig = Rig(shared)
    with rig.relay:
        rig.relay.on_input("recorder_status", encode_status(RecorderStatus()), {})
        rig.relay.on_closed("recorder_status")
        rig.relay.on_closed("saver_status")
        assert rig.relay.done
    assert len(rig.said) == 1 and "no keys this run: cannot listen for a keyboard" in rig.said[0] and "private to uid" in rig.said[0]
    assert list(shared.iterdir()) == []


def test_private_dir_is_made_0700_and_a_symlink_is_refused(tmp_path):
    made = private_dir(tmp_path / "a" / "relays")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    (tmp_path / "link").symlink_to(made)
    with pytest.raises(key_relay.RelayDirError):
        private_dir(tmp_path / "link")
