"""FeetechBus against the servo emulator through a real pty with pyserial: instructions, faults, retries."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from e2e_helpers import Lines

from operating_platform.hardware.feetech.bus import FeetechBus
from operating_platform.hardware.feetech.emulator import ServoBusEmulator
from operating_platform.hardware.feetech.protocol import (
    FeetechChecksumError,
    FeetechMissingServoError,
    FeetechPortError,
    FeetechServoStatusError,
    FeetechShortReplyError,
    FeetechTimeoutError,
)

IDS = [1, 2, 3, 4, 5, 6]


@pytest.fixture
def emulator():
    with ServoBusEmulator(IDS) as emu:
        yield emu


@pytest.fixture
def bus(emulator):
    # generous timeout: other test processes may starve the emulator thread for tens of ms
    with FeetechBus(emulator.slave_path, timeout_s=0.25, retries=2) as bus:
        yield bus


def test_ping_read_write(bus, emulator):
    bus.ping(3)
    assert bus.read("Model_Number", 3) == 777
    bus.write("P_Coefficient", 3, 16)
    assert emulator.get(3, "P_Coefficient") == 16
    assert bus.read("P_Coefficient", 3) == 16


def test_negative_homing_offset_goes_over_the_wire_as_sign_magnitude(bus, emulator):
    bus.write("Homing_Offset", 2, -300)
    assert bytes(emulator.servos[2].memory[31:33]) == (0x800 | 300).to_bytes(2, "little")
    assert bus.read("Homing_Offset", 2) == -300
    # the servo applies it: present = shaft - offset
    assert bus.read("Present_Position", 2) == 2048 + 300


def test_sync_read_returns_every_servo_in_one_round_trip(bus, emulator):
    for servo_id in IDS:
        emulator.move(servo_id, 1000 + 100 * servo_id)
    before = emulator.packets_handled
    assert bus.sync_read("Present_Position", IDS) == {i: 1000 + 100 * i for i in IDS}
    assert emulator.packets_handled - before == 1


def test_sync_write_moves_torqued_servos_toward_goal(bus, emulator):
    for servo_id in IDS:
        bus.write("Torque_Enable", servo_id, 1)
    bus.sync_write("Goal_Position", {i: 2048 + 50 * i for i in IDS})
    deadline = time.monotonic() + 2
    while bus.sync_read("Present_Position", IDS) != {i: 2048 + 50 * i for i in IDS}:
        assert time.monotonic() < deadline, "servos did not reach their goals"
        time.sleep(0.01)


def test_unplugged_servo_in_sync_read_names_it(bus, emulator):
    emulator.inject("missing", 3)
    with pytest.raises(FeetechTimeoutError) as info:
        bus.sync_read("Present_Position", IDS)
    assert info.value.servo_id == 3
    assert str(info.value) == (
        f"no reply (servo 4 answered in its turn) (port {bus.port}, servo id 3, register Present_Position)"
    )


def test_unplugged_last_servo_times_out(bus, emulator):
    emulator.inject("missing", 6)
    with pytest.raises(FeetechTimeoutError, match=r"no reply within 250 ms \(port .*, servo id 6, register Present_Position\)"):
        bus.sync_read("Present_Position", IDS)


def test_missing_servo_on_ping(bus, emulator):
    emulator.inject("missing", 5)
    with pytest.raises(FeetechMissingServoError) as info:
        bus.ping(5)
    assert "servo does not answer PING after 3 attempts" in str(info.value)
    assert f"port {bus.port}, servo id 5" in str(info.value)


def test_corrupt_checksum_is_retried_then_reported(bus, emulator):
    emulator.inject("corrupt_checksum", 2, count=1)
    assert bus.read("Present_Position", 2) == 2048
    assert bus.retries_used == 1
    emulator.inject("corrupt_checksum", 2, count=-1)
    with pytest.raises(FeetechChecksumError, match=r"checksum mismatch: .*servo id 2, register Present_Position"):
        bus.read("Present_Position", 2)
    assert bus.retries_used == 3  # bounded: 2 more retries, then the error


def test_retries_are_bounded(bus, emulator):
    emulator.inject("drop", 4, count=3)  # one more than the 2 retries allow
    with pytest.raises(FeetechTimeoutError, match="servo id 4"):
        bus.sync_read("Present_Position", IDS)
    assert bus.sync_read("Present_Position", IDS)[4] == 2048  # the fault is over, the bus works


def test_short_reply(bus, emulator):
    emulator.inject("short", 1)
    with pytest.raises(FeetechShortReplyError, match=r"short reply: 4 of 8 bytes .*\(ff ff 01 04\).*servo id 1"):
        bus.read("Present_Position", 1)


def test_slow_reply_is_a_timeout_and_a_fast_enough_one_is_fine(bus, emulator):
    emulator.inject("delay", value=0.02)
    assert bus.read("Present_Position", 1) == 2048
    emulator.inject("delay", value=0.6)
    # without retries: a retry could take the first request's late reply as its own answer (the protocol has
    # no sequence numbers), which is right data, just late
    bus.retries = 0
    with pytest.raises(FeetechTimeoutError, match="no reply within 250 ms"):
        bus.read("Present_Position", 1)


def test_servo_status_error_names_the_fault(bus, emulator):
    emulator.inject("status_error", 4, value=0x24)
    with pytest.raises(FeetechServoStatusError, match=r"servo reports overheat, overload .*servo id 4"):
        bus.read("Present_Position", 4)


def test_wrong_port_is_one_clear_error():
    with pytest.raises(FeetechPortError) as info:
        FeetechBus("/dev/ttyACM_not_there")
    assert "cannot open serial port at 1000000 baud" in str(info.value)
    assert "No such file or directory" in str(info.value)
    assert info.value.port == "/dev/ttyACM_not_there"


def test_unplugged_adapter_is_a_port_error_on_every_call(bus, emulator):
    emulator.stop()  # the pty's other end goes away, as a USB adapter pulled out
    for _ in range(2):
        with pytest.raises(FeetechPortError, match=r"serial port lost \(USB adapter unplugged\?\):.*Input/output error"):
            bus.sync_read("Present_Position", IDS)
    with pytest.raises(FeetechPortError, match=r"serial port lost .*register Goal_Position"):
        bus.sync_write("Goal_Position", {1: 2048})


def test_port_opened_twice_is_refused(bus):
    with pytest.raises(FeetechPortError, match="cannot open serial port"):
        FeetechBus(bus.port)


def test_writes_are_checked_before_the_wire(bus):
    with pytest.raises(ValueError, match="read-only"):
        bus.write("Present_Position", 1, 5)
    with pytest.raises(ValueError, match=r"magnitude of 3000 exceeds 2047 .*servo id 1, register Homing_Offset"):
        bus.write("Homing_Offset", 1, 3000)


def test_emulator_cli_runs_as_a_process_with_stdin_commands(tmp_path):
    link = tmp_path / "leader_bus"
    proc = subprocess.Popen(
        [sys.executable, "-m", "operating_platform.hardware.feetech.emulator", "--missing", "6", "--link", str(link)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = Lines(proc.stdout)
        path = lines.next().strip()
        assert os.path.realpath(link) == path  # a stable name for dataflow env
        with FeetechBus(str(link)) as bus:
            with pytest.raises(FeetechMissingServoError):
                bus.ping(6)
            proc.stdin.write(json.dumps({"cmd": "move", "id": 2, "position": 3000}) + "\n")
            proc.stdin.write(json.dumps({"cmd": "fault", "kind": "corrupt_checksum", "id": 1}) + "\n")
            proc.stdin.write(json.dumps({"cmd": "bogus"}) + "\n")
            proc.stdin.flush()
            assert [json.loads(lines.next()) for _ in range(3)] == [
                {"ok": True},
                {"ok": True},
                {"ok": False, "error": "unknown command 'bogus'"},
            ]
            assert bus.read("Present_Position", 2) == 3000
            with pytest.raises(FeetechChecksumError):
                bus.read("Present_Position", 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert not os.path.lexists(link)
    finally:
        proc.kill()
        proc.wait()
