"""Feetech SCS/STS protocol 0: packet framing, checksums and the errors a bus reports.

Instruction packet: 0xFF 0xFF ID LEN INSTRUCTION PARAM... CHECKSUM
Status packet:      0xFF 0xFF ID LEN ERROR       PARAM... CHECKSUM
LEN counts the bytes after itself (instruction/error + params + checksum);
CHECKSUM = ~(ID + LEN + INSTRUCTION/ERROR + sum(PARAMS)) & 0xFF.
Multi-byte register values are little-endian. Both the driver (bus.py) and the
emulator (emulator.py) frame packets here, so they cannot disagree on the wire.
"""

from __future__ import annotations

from enum import IntEnum

HEADER = b"\xff\xff"
BROADCAST_ID = 0xFE
MAX_SERVO_ID = 0xFD
STATUS_OVERHEAD = 6  # header(2) + id + len + error + checksum


class Instruction(IntEnum):
    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83


# Bits of a status packet's error byte (STS/SMS manual).
STATUS_ERROR_BITS = {
    0x01: "input voltage",
    0x02: "angle sensor",
    0x04: "overheat",
    0x08: "overcurrent",
    0x20: "overload",
}


def checksum(body: bytes) -> int:
    """Checksum over ID, LEN, INSTRUCTION/ERROR and params (everything between header and checksum)."""
    return (~sum(body)) & 0xFF


def frame(servo_id: int, code: int, params: bytes = b"") -> bytes:
    """One packet: `code` is an Instruction for requests, the error byte for status replies."""
    if not 0 <= servo_id <= 0xFE:
        raise ValueError(f"servo id {servo_id} out of range 0..254")
    if len(params) > 250:
        raise ValueError(f"{len(params)} parameter bytes exceed one packet")
    body = bytes((servo_id, len(params) + 2, code)) + params
    return HEADER + body + bytes((checksum(body),))


def describe_status_error(error_byte: int) -> str:
    names = [name for bit, name in STATUS_ERROR_BITS.items() if error_byte & bit]
    unknown = error_byte & ~sum(STATUS_ERROR_BITS)
    if unknown:
        names.append(f"unknown bits 0x{unknown:02x}")
    return ", ".join(names)


def encode_value(value: int, size: int, sign_bit: int | None = None) -> bytes:
    """Register value -> little-endian bytes; signed registers use sign-magnitude (STS quirk)."""
    if sign_bit is not None:
        value = encode_sign_magnitude(value, sign_bit)
    if not 0 <= value < 1 << (8 * size):
        raise ValueError(f"value {value} does not fit in {size} byte(s)")
    return value.to_bytes(size, "little")


def decode_value(data: bytes, sign_bit: int | None = None) -> int:
    raw = int.from_bytes(data, "little")
    return decode_sign_magnitude(raw, sign_bit) if sign_bit is not None else raw


def encode_sign_magnitude(value: int, sign_bit: int) -> int:
    """STS registers such as Homing_Offset keep the sign in one bit and |value| below it (not two's complement)."""
    magnitude_limit = (1 << sign_bit) - 1
    if abs(value) > magnitude_limit:
        raise ValueError(f"magnitude of {value} exceeds {magnitude_limit} (sign bit {sign_bit})")
    return (1 << sign_bit) | -value if value < 0 else value


def decode_sign_magnitude(raw: int, sign_bit: int) -> int:
    magnitude = raw & ((1 << sign_bit) - 1)
    return -magnitude if (raw >> sign_bit) & 1 else magnitude


class FeetechError(RuntimeError):
    """A bus failure, always naming the port and, where known, the servo id and register."""

    def __init__(self, detail: str, port: str, servo_id: int | None = None, register: str | None = None):
        self.detail = detail
        self.port = port
        self.servo_id = servo_id
        self.register = register
        where = [f"port {port}"]
        if servo_id is not None:
            where.append(f"servo id {servo_id}")
        if register is not None:
            where.append(f"register {register}")
        super().__init__(f"{detail} ({', '.join(where)})")


class FeetechPortError(FeetechError):
    """The serial port cannot be opened (wrong path, unplugged adapter, no permission)."""


class FeetechTimeoutError(FeetechError):
    """No reply byte at all before the deadline: servo unplugged, unpowered, wrong id, or too slow."""


class FeetechShortReplyError(FeetechError):
    """A reply started but stopped before its announced length."""


class FeetechCorruptReplyError(FeetechError):
    """A reply with the wrong id, length or framing."""


class FeetechChecksumError(FeetechError):
    """A complete reply whose checksum does not match its bytes."""


class FeetechServoStatusError(FeetechError):
    """The servo replied, but its error byte reports a fault (overload, overheat, ...)."""


class FeetechMissingServoError(FeetechError):
    """A servo the arm needs does not answer PING."""


# Failures worth retrying: the servo may answer correctly next time.
TRANSIENT_ERRORS = (FeetechTimeoutError, FeetechShortReplyError, FeetechCorruptReplyError, FeetechChecksumError)
