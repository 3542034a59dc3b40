"""FeetechBus: PING / READ / WRITE / SYNC_READ / SYNC_WRITE to STS3215 servos over pyserial.

Every reply is checked (framing, id, length, checksum, error byte) and every
failure raises one specific FeetechError naming port, servo id and register.
Transient failures (timeout, short, garbled, checksum) are retried a bounded
number of times, stale bytes flushed in between; `retries_used` counts them so
callers can report a flaky bus instead of hiding it.
"""

from __future__ import annotations

import select
import termios
import threading
import time

import serial

from .control_table import DEFAULT_BAUDRATE, Register, register
from .protocol import (
    BROADCAST_ID,
    HEADER,
    STATUS_OVERHEAD,
    TRANSIENT_ERRORS,
    FeetechChecksumError,
    FeetechCorruptReplyError,
    FeetechMissingServoError,
    FeetechPortError,
    FeetechServoStatusError,
    FeetechShortReplyError,
    FeetechTimeoutError,
    Instruction,
    checksum,
    decode_value,
    describe_status_error,
    encode_value,
    frame,
)

PORT_FAILURES = (serial.SerialException, OSError, termios.error)  # adapter unplugged, port gone
PORT_LOST = "serial port lost (USB adapter unplugged?):"
DEFAULT_TIMEOUT_S = 0.05
DEFAULT_RETRIES = 2


class FeetechBus:
    """One serial port shared by several servos (half-duplex: one transaction at a time)."""

    def __init__(
        self,
        port: str,
        baudrate: int = DEFAULT_BAUDRATE,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
    ):
        self.port = port
        self.timeout_s = timeout_s
        self.retries = retries
        self.retries_used = 0
        self._lock = threading.Lock()
        try:
            self._serial = serial.Serial(port, baudrate, timeout=0, write_timeout=1.0, exclusive=True)
        except (*PORT_FAILURES, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise FeetechPortError(f"cannot open serial port at {baudrate} baud: {reason}", port) from exc

    # -- public instructions -------------------------------------------------

    def ping(self, servo_id: int) -> None:
        """Raise FeetechMissingServoError unless `servo_id` answers."""
        try:
            self._transact(frame(servo_id, Instruction.PING), [servo_id], 0, None)
        except FeetechTimeoutError as exc:
            raise FeetechMissingServoError(
                f"servo does not answer PING after {self.retries + 1} attempts "
                "(unplugged, unpowered, wrong id or wrong baud rate)",
                self.port,
                servo_id,
            ) from exc

    def read(self, name: str, servo_id: int) -> int:
        reg = register(name)
        packet = frame(servo_id, Instruction.READ, bytes((reg.address, reg.size)))
        (data,) = self._transact(packet, [servo_id], reg.size, reg)
        return decode_value(data, reg.sign_bit)

    def write(self, name: str, servo_id: int, value: int) -> None:
        reg = self._writable(name)
        packet = frame(servo_id, Instruction.WRITE, bytes((reg.address,)) + self._encode(reg, servo_id, value))
        self._transact(packet, [servo_id], 0, reg)

    def sync_read(self, name: str, servo_ids: list[int]) -> dict[int, int]:
        """One request, one reply per servo in id order: the whole arm in a single bus round trip."""
        reg = register(name)
        packet = frame(BROADCAST_ID, Instruction.SYNC_READ, bytes((reg.address, reg.size, *servo_ids)))
        replies = self._transact(packet, servo_ids, reg.size, reg)
        return {servo_id: decode_value(data, reg.sign_bit) for servo_id, data in zip(servo_ids, replies)}

    def sync_write(self, name: str, values: dict[int, int]) -> None:
        """Broadcast: servos do not reply, so nothing is retried or confirmed."""
        reg = self._writable(name)
        params = bytearray((reg.address, reg.size))
        for servo_id, value in values.items():
            params.append(servo_id)
            params += self._encode(reg, servo_id, value)
        with self._lock:
            self._send(frame(BROADCAST_ID, Instruction.SYNC_WRITE, bytes(params)), reg)

    def close(self) -> None:
        self._serial.close()

    def __enter__(self) -> FeetechBus:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- transaction machinery ----------------------------------------------

    def _writable(self, name: str) -> Register:
        reg = register(name)
        if reg.read_only:
            raise ValueError(f"register {name} is read-only")
        return reg

    def _encode(self, reg: Register, servo_id: int, value: int) -> bytes:
        try:
            return encode_value(int(value), reg.size, reg.sign_bit)
        except ValueError as exc:
            raise ValueError(f"{exc} (port {self.port}, servo id {servo_id}, register {reg.name})") from None

    def _send(self, packet: bytes, reg: Register | None) -> None:
        try:
            self._serial.write(packet)
        except PORT_FAILURES as exc:
            raise FeetechPortError(f"{PORT_LOST} write failed: {exc}", self.port, register=reg and reg.name) from exc

    def _transact(self, packet: bytes, servo_ids: list[int], n_params: int, reg: Register | None) -> list[bytes]:
        """Send `packet`, collect one status reply per id; retry the whole exchange on transient failures."""
        with self._lock:
            for attempt in range(self.retries + 1):
                self._discard_input(reg)
                self._send(packet, reg)
                deadline = time.monotonic() + self.timeout_s
                try:
                    return [
                        self._receive(servo_id, n_params, reg, deadline, later_ids=servo_ids[index + 1 :])
                        for index, servo_id in enumerate(servo_ids)
                    ]
                except TRANSIENT_ERRORS:
                    if attempt == self.retries:
                        raise
                    self.retries_used += 1
                    self._drain_late_bytes(reg)
        raise AssertionError("unreachable")

    def _drain_late_bytes(self, reg: Register | None) -> None:
        """Let a late reply to the failed attempt arrive and discard it, so it is not read as the next answer."""
        time.sleep(min(self.timeout_s, 0.005))
        self._discard_input(reg)

    def _discard_input(self, reg: Register | None) -> None:
        try:
            self._serial.reset_input_buffer()
        except PORT_FAILURES as exc:
            raise FeetechPortError(f"{PORT_LOST} {exc}", self.port, register=reg and reg.name) from exc

    def _receive(
        self, servo_id: int, n_params: int, reg: Register | None, deadline: float, later_ids: list[int] = ()
    ) -> bytes:
        """One status packet from `servo_id`; in a SYNC_READ, a reply from a later id means this one is silent."""
        expected = STATUS_OVERHEAD + n_params
        reg_name = reg.name if reg else None
        buf = bytearray()
        received = 0
        while True:
            buf = _align_on_header(buf)
            if len(buf) >= 3 and buf[2] in later_ids:
                raise FeetechTimeoutError(
                    f"no reply (servo {buf[2]} answered in its turn)", self.port, servo_id, reg_name
                )
            if len(buf) >= 4 and (buf[2] != servo_id or buf[3] != n_params + 2):
                raise FeetechCorruptReplyError(
                    f"garbled reply: expected id {servo_id} with length {n_params + 2}, "
                    f"got id {buf[2]} with length {buf[3]} ({bytes(buf).hex(' ')})",
                    self.port,
                    servo_id,
                    reg_name,
                )
            if len(buf) >= expected:
                break
            chunk = self._read_some(expected - len(buf), deadline)
            if chunk is None:
                if received == 0:
                    raise FeetechTimeoutError(
                        f"no reply within {self.timeout_s * 1000:.0f} ms", self.port, servo_id, reg_name
                    )
                raise FeetechShortReplyError(
                    f"short reply: {len(buf)} of {expected} bytes before the {self.timeout_s * 1000:.0f} ms "
                    f"timeout ({bytes(buf).hex(' ')})",
                    self.port,
                    servo_id,
                    reg_name,
                )
            received += len(chunk)
            buf += chunk
        body = bytes(buf[2 : expected - 1])
        if checksum(body) != buf[expected - 1]:
            raise FeetechChecksumError(
                f"checksum mismatch: reply says 0x{buf[expected - 1]:02x}, bytes sum to 0x{checksum(body):02x}",
                self.port,
                servo_id,
                reg_name,
            )
        error_byte = buf[4]
        if error_byte:
            raise FeetechServoStatusError(
                f"servo reports {describe_status_error(error_byte)} (error byte 0x{error_byte:02x})",
                self.port,
                servo_id,
                reg_name,
            )
        return bytes(buf[5 : expected - 1])

    def _read_some(self, max_bytes: int, deadline: float) -> bytes | None:
        """Up to `max_bytes` as soon as any arrive, or None at the deadline."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                ready, _, _ = select.select([self._serial.fileno()], [], [], remaining)
                if ready:
                    chunk = self._serial.read(max_bytes)
                    if chunk:
                        return chunk
            except PORT_FAILURES as exc:
                raise FeetechPortError(f"{PORT_LOST} read failed: {exc}", self.port) from exc


def _align_on_header(buf: bytearray) -> bytearray:
    """Drop noise before the first 0xFF 0xFF (keeping a trailing 0xFF that may start one)."""
    start = buf.find(HEADER)
    if start == 0:
        return buf
    if start > 0:
        return buf[start:]
    return buf[-1:] if buf.endswith(b"\xff") else bytearray()
