"""Packet framing, checksums, little-endian values and STS sign-magnitude, byte for byte."""

import pytest

from operating_platform.hardware.feetech.control_table import STS3215, register
from operating_platform.hardware.feetech.protocol import (
    Instruction,
    checksum,
    decode_sign_magnitude,
    decode_value,
    describe_status_error,
    encode_sign_magnitude,
    encode_value,
    frame,
)


def test_ping_packet_matches_the_manual_example():
    # Feetech manual: PING to id 1 is FF FF 01 02 01 FB
    assert frame(1, Instruction.PING) == bytes.fromhex("ff ff 01 02 01 fb")


def test_read_present_position_packet():
    packet = frame(1, Instruction.READ, bytes((56, 2)))
    assert packet == bytes.fromhex("ff ff 01 04 02 38 02 be")


def test_sync_read_packet_lists_address_size_and_ids():
    packet = frame(0xFE, Instruction.SYNC_READ, bytes((56, 2, 1, 2, 3, 4, 5, 6)))
    assert packet[:5] == bytes.fromhex("ff ff fe 0a 82")
    assert packet[5:-1] == bytes((56, 2, 1, 2, 3, 4, 5, 6))
    assert packet[-1] == checksum(packet[2:-1])


@pytest.mark.parametrize("params", [b"", b"\x00", bytes(range(40)), b"\xff" * 250])
def test_checksum_round_trip_and_single_bit_flip_detected(params):
    packet = frame(7, 0x00, params)
    assert checksum(packet[2:-1]) == packet[-1]
    corrupted = bytearray(packet)
    corrupted[4] ^= 0x01
    assert checksum(bytes(corrupted[2:-1])) != corrupted[-1]


def test_frame_rejects_bad_ids_and_oversized_packets():
    with pytest.raises(ValueError, match="servo id 300"):
        frame(300, Instruction.PING)
    with pytest.raises(ValueError, match="251 parameter bytes"):
        frame(1, Instruction.WRITE, bytes(251))


def test_values_are_little_endian():
    assert encode_value(0x0A0B, 2) == b"\x0b\x0a"
    assert decode_value(b"\x0b\x0a") == 0x0A0B
    with pytest.raises(ValueError, match="does not fit in 1 byte"):
        encode_value(256, 1)


def test_homing_offset_sign_is_bit_11_not_twos_complement():
    reg = register("Homing_Offset")
    assert reg.sign_bit == 11
    assert encode_value(-100, reg.size, reg.sign_bit) == (0x800 | 100).to_bytes(2, "little")
    assert encode_value(100, reg.size, reg.sign_bit) == (100).to_bytes(2, "little")
    assert decode_value((0x800 | 100).to_bytes(2, "little"), reg.sign_bit) == -100


@pytest.mark.parametrize("sign_bit", [11, 15])
@pytest.mark.parametrize("value", [0, 1, -1, 2047, -2047, 1234, -999])
def test_sign_magnitude_round_trip(value, sign_bit):
    assert decode_sign_magnitude(encode_sign_magnitude(value, sign_bit), sign_bit) == value


def test_sign_magnitude_overflow_is_an_error():
    with pytest.raises(ValueError, match="magnitude of -2048 exceeds 2047"):
        encode_sign_magnitude(-2048, 11)


def test_velocity_registers_use_bit_15():
    assert STS3215["Present_Velocity"].sign_bit == 15
    assert decode_value((0x8000 | 50).to_bytes(2, "little"), 15) == -50


def test_control_table_addresses_the_so101_needs():
    expected = {
        "Present_Position": (56, 2),
        "Goal_Position": (42, 2),
        "Torque_Enable": (40, 1),
        "P_Coefficient": (21, 1),
        "D_Coefficient": (22, 1),
        "I_Coefficient": (23, 1),
        "Operating_Mode": (33, 1),
        "Min_Position_Limit": (9, 2),
        "Max_Position_Limit": (11, 2),
        "Homing_Offset": (31, 2),
        "Lock": (55, 1),
    }
    assert {name: (STS3215[name].address, STS3215[name].size) for name in expected} == expected
    with pytest.raises(KeyError, match="unknown STS3215 register 'Goal_Positon'"):
        register("Goal_Positon")


def test_status_error_byte_is_described():
    assert describe_status_error(0x20) == "overload"
    assert describe_status_error(0x05) == "input voltage, overheat"
    assert "unknown bits 0x40" in describe_status_error(0x40)
