"""An emulated Feetech bus of STS3215 servos behind a real pseudo-terminal.

Tests and benchmarks talk to it exactly as to a USB servo adapter: the driver
opens the pty slave with pyserial. Each servo keeps a control table (present
position = physical position - homing offset, sign-magnitude offset, position
limits) and, with torque on, moves toward its goal at a bounded speed; with
torque off it stays where a "hand" put it (`move`, or a sine `wave` that
imitates an operator moving the leader). Faults can be injected per servo:
corrupt checksum, dropped reply, short reply, status error byte, missing id,
and a reply delay for the whole bus.

CLI (prints the pty path on the first stdout line, then serves until killed):
    python -m operating_platform.hardware.feetech.emulator [--ids 1,2,3,4,5,6]
        [--link /tmp/leader_bus] [--wave 300,2.0] [--missing 3]
Further control as JSON lines on stdin, e.g.
    {"cmd": "fault", "kind": "drop", "id": 3, "count": 2}
    {"cmd": "fault", "kind": "delay", "seconds": 0.2}
    {"cmd": "move", "id": 1, "position": 3000}
    {"cmd": "clear"}
each answered by one JSON line on stdout ({"ok": true} or {"ok": false, "error": ...}).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import signal
import sys
import threading
import time
import tty
from dataclasses import dataclass, field

from .control_table import STS3215, STS3215_MODEL_NUMBER, STS3215_RESOLUTION, register
from .protocol import BROADCAST_ID, HEADER, Instruction, checksum, decode_value, encode_value, frame

DEFAULT_IDS = (1, 2, 3, 4, 5, 6)
DEFAULT_SPEED_STEPS_PER_S = 4000.0  # close to an STS3215 at full speed (~0.22 s per 60 degrees)
COUNTED_FAULTS = ("drop", "corrupt_checksum", "short")


@dataclass
class Faults:
    """Per-servo counted faults (-1 = until cleared), missing ids, status error bytes, bus-wide delay."""

    counted: dict[str, dict[int, int]] = field(default_factory=lambda: {kind: {} for kind in COUNTED_FAULTS})
    missing: set[int] = field(default_factory=set)
    status_error: dict[int, int] = field(default_factory=dict)
    delay_s: float = 0.0

    def take(self, kind: str, servo_id: int) -> bool:
        """True if a counted fault of `kind` applies to this reply (and consume one)."""
        remaining = self.counted[kind].get(servo_id, 0)
        if remaining == 0:
            return False
        if remaining > 0:
            self.counted[kind][servo_id] = remaining - 1
        return True


class EmulatedServo:
    """One STS3215: a 256-byte control table plus a physical shaft position."""

    def __init__(self, servo_id: int, speed_steps_per_s: float):
        self.memory = bytearray(256)
        self.speed = speed_steps_per_s
        self.shaft = STS3215_RESOLUTION / 2  # physical position, steps
        for name, value in {
            "Model_Number": STS3215_MODEL_NUMBER,
            "ID": servo_id,
            "Return_Delay_Time": 0,
            "Min_Position_Limit": 0,
            "Max_Position_Limit": STS3215_RESOLUTION - 1,
            "P_Coefficient": 32,
            "D_Coefficient": 32,
            "Present_Voltage": 120,
            "Present_Temperature": 30,
        }.items():
            self.set(name, value)
        self._sync_present()
        self.set("Goal_Position", self.get("Present_Position"))

    def get(self, name: str) -> int:
        reg = register(name)
        return decode_value(bytes(self.memory[reg.address : reg.address + reg.size]), reg.sign_bit)

    def set(self, name: str, value: int) -> None:
        reg = register(name)
        self.memory[reg.address : reg.address + reg.size] = encode_value(value, reg.size, reg.sign_bit)

    def present(self) -> float:
        return (self.shaft - self.get("Homing_Offset")) % STS3215_RESOLUTION

    def place(self, present_position: float) -> None:
        """A hand puts the shaft where the servo will read `present_position`."""
        self.shaft = (present_position + self.get("Homing_Offset")) % STS3215_RESOLUTION
        self._sync_present()

    def step(self, dt: float) -> None:
        if self.get("Torque_Enable"):
            goal = float(self.get("Goal_Position"))
            low, high = self.get("Min_Position_Limit"), self.get("Max_Position_Limit")
            if high > low:
                goal = min(max(goal, low), high)
            here = self.present()
            move = max(-self.speed * dt, min(self.speed * dt, goal - here))
            self.place(here + move)
        else:
            self._sync_present()
            self.set("Goal_Position", self.get("Present_Position"))

    def read(self, address: int, size: int) -> bytes:
        return bytes(self.memory[address : address + size])

    def write(self, address: int, data: bytes) -> None:
        self.memory[address : address + len(data)] = data
        if address <= STS3215["Homing_Offset"].address < address + len(data):
            self._sync_present()

    def _sync_present(self) -> None:
        self.set("Present_Position", int(round(self.present())) % STS3215_RESOLUTION)


class ServoBusEmulator:
    """Servos on a pty; serve in a thread (`with ServoBusEmulator() as emu:`) or in the foreground (`serve`)."""

    def __init__(self, ids=DEFAULT_IDS, speed_steps_per_s: float = DEFAULT_SPEED_STEPS_PER_S):
        self.servos = {servo_id: EmulatedServo(servo_id, speed_steps_per_s) for servo_id in ids}
        self.faults = Faults()
        self.wave: tuple[float, float] | None = None  # (amplitude steps, period s) for torque-off servos
        self.packets_handled = 0
        self._lock = threading.RLock()
        self._master_fd, self._slave_fd = os.openpty()
        tty.setraw(self._master_fd)
        tty.setraw(self._slave_fd)  # kept open: the master would read EIO whenever no client holds the slave
        self.slave_path = os.ttyname(self._slave_fd)
        self._started = time.monotonic()
        self._last_step = self._started
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rx = bytearray()

    # -- control (thread-safe) -------------------------------------------------

    def inject(self, kind: str, servo_id: int | None = None, count: int = -1, value: float = 0.0) -> None:
        with self._lock:
            if kind in COUNTED_FAULTS:
                self.faults.counted[kind][self._known(servo_id)] = count
            elif kind == "missing":
                self.faults.missing.add(self._known(servo_id))
            elif kind == "status_error":
                self.faults.status_error[self._known(servo_id)] = int(value) or 0x20
            elif kind == "delay":
                self.faults.delay_s = float(value)
            else:
                raise ValueError(f"unknown fault kind {kind!r}")

    def clear_faults(self) -> None:
        with self._lock:
            self.faults = Faults()

    def move(self, servo_id: int, present_position: float) -> None:
        with self._lock:
            self.servos[self._known(servo_id)].place(present_position)

    def get(self, servo_id: int, name: str) -> int:
        with self._lock:
            self._advance()
            return self.servos[self._known(servo_id)].get(name)

    def set_wave(self, amplitude_steps: float, period_s: float) -> None:
        with self._lock:
            self.wave = (amplitude_steps, period_s) if amplitude_steps else None

    # -- serving ---------------------------------------------------------------

    def start(self) -> ServoBusEmulator:
        self._thread = threading.Thread(target=self.serve, name=f"emulator {self.slave_path}", daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for fd in (self._master_fd, self._slave_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> ServoBusEmulator:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def serve(self, extra_fds: dict[int, callable] | None = None) -> None:
        """Answer packets until stop(); `extra_fds` maps fds to callbacks (the CLI's stdin commands)."""
        extra_fds = dict(extra_fds or {})
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master_fd, *extra_fds], [], [], 0.05)
            for fd in ready:
                if fd == self._master_fd:
                    self._on_bytes(os.read(self._master_fd, 4096))
                elif not extra_fds[fd]():
                    del extra_fds[fd]

    def _on_bytes(self, data: bytes) -> None:
        self._rx += data
        while True:
            start = self._rx.find(HEADER)
            if start < 0:
                del self._rx[:-1]
                return
            del self._rx[:start]
            if len(self._rx) < 4 or len(self._rx) < 4 + self._rx[3]:
                return
            packet = bytes(self._rx[: 4 + self._rx[3]])
            del self._rx[: len(packet)]
            if checksum(packet[2:-1]) != packet[-1]:
                continue  # a real servo ignores a corrupted instruction
            with self._lock:
                reply = self._handle(packet[2], packet[4], packet[5:-1])
                delay = self.faults.delay_s
            if reply:
                if delay and self._stop.wait(delay):
                    return  # stopping: a slow reply nobody will read
                os.write(self._master_fd, reply)

    def _handle(self, target: int, instruction: int, params: bytes) -> bytes:
        self.packets_handled += 1
        self._advance()
        if instruction == Instruction.SYNC_WRITE and target == BROADCAST_ID:
            address, size = params[0], params[1]
            for offset in range(2, len(params), size + 1):
                servo = self.servos.get(params[offset])
                if servo is not None and params[offset] not in self.faults.missing:
                    servo.write(address, params[offset + 1 : offset + 1 + size])
            return b""
        if instruction == Instruction.SYNC_READ and target == BROADCAST_ID:
            address, size = params[0], params[1]
            return b"".join(self._reply(servo_id, lambda s: s.read(address, size)) for servo_id in params[2:])
        if instruction == Instruction.PING:
            return self._reply(target, lambda s: b"")
        if instruction == Instruction.READ:
            return self._reply(target, lambda s: s.read(params[0], params[1]))
        if instruction == Instruction.WRITE:
            return self._reply(target, lambda s: s.write(params[0], params[1:]) or b"")
        return b""

    def _reply(self, servo_id: int, action) -> bytes:
        servo = self.servos.get(servo_id)
        if servo is None or servo_id in self.faults.missing:
            return b""
        payload = action(servo)
        if self.faults.take("drop", servo_id):
            return b""
        packet = frame(servo_id, self.faults.status_error.get(servo_id, 0), payload)
        if self.faults.take("corrupt_checksum", servo_id):
            packet = packet[:-1] + bytes(((packet[-1] + 1) & 0xFF,))
        if self.faults.take("short", servo_id):
            packet = packet[: len(packet) // 2]
        return packet

    def _advance(self) -> None:
        now = time.monotonic()
        dt, self._last_step = now - self._last_step, now
        for index, servo in enumerate(self.servos.values()):
            if self.wave is not None and not servo.get("Torque_Enable"):
                amplitude, period = self.wave
                phase = 2 * math.pi * ((now - self._started) / period + index / len(self.servos))
                servo.place(STS3215_RESOLUTION / 2 + amplitude * math.sin(phase))
            servo.step(dt)

    def _known(self, servo_id: int | None) -> int:
        if servo_id not in self.servos:
            raise ValueError(f"no emulated servo with id {servo_id}; ids are {sorted(self.servos)}")
        return servo_id


class _CommandChannel:
    """JSON commands, one per line, read from a raw fd so several lines in one chunk are all applied."""

    def __init__(self, emulator: ServoBusEmulator, in_fd: int, out):
        self.emulator = emulator
        self.in_fd = in_fd
        self.out = out
        self._pending = b""

    def on_ready(self) -> bool:
        """Apply every complete line; False at EOF so serve() stops watching the fd."""
        data = os.read(self.in_fd, 4096)
        if not data:
            return False
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            if line.strip():
                self.out.write(json.dumps(self._apply(line)) + "\n")
        self.out.flush()
        return True

    def _apply(self, line: bytes) -> dict:
        emulator = self.emulator
        try:
            cmd = json.loads(line)
            kind = cmd.get("cmd")
            if kind == "fault":
                value = cmd.get("seconds", cmd.get("value", 0))
                emulator.inject(cmd["kind"], cmd.get("id"), int(cmd.get("count", -1)), value)
            elif kind == "clear":
                emulator.clear_faults()
            elif kind == "move":
                emulator.move(int(cmd["id"]), float(cmd["position"]))
            elif kind == "wave":
                emulator.set_wave(float(cmd["amplitude"]), float(cmd["period"]))
            elif kind == "get":
                return {"ok": True, "value": emulator.get(int(cmd["id"]), cmd["register"])}
            else:
                raise ValueError(f"unknown command {kind!r}")
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", default=",".join(map(str, DEFAULT_IDS)), help="servo ids on the bus")
    parser.add_argument("--link", help="also expose the pty at this path (a symlink), e.g. /tmp/so101_leader")
    parser.add_argument("--wave", help="AMPLITUDE_STEPS,PERIOD_S: torque-off servos follow a sine (an operator's hand)")
    parser.add_argument("--missing", default="", help="ids that never answer (an unplugged servo)")
    parser.add_argument("--speed", type=float, default=DEFAULT_SPEED_STEPS_PER_S, help="steps per second")
    args = parser.parse_args(argv)

    emulator = ServoBusEmulator([int(i) for i in args.ids.split(",")], args.speed)
    for servo_id in filter(None, args.missing.split(",")):
        emulator.inject("missing", int(servo_id))
    if args.wave:
        amplitude, period = (float(x) for x in args.wave.split(","))
        emulator.set_wave(amplitude, period)
    if args.link:
        if os.path.lexists(args.link):
            os.unlink(args.link)
        os.symlink(emulator.slave_path, args.link)
    signal.signal(signal.SIGTERM, lambda *_: emulator.request_stop())
    print(emulator.slave_path, flush=True)
    extra = {}
    if sys.stdin is not None and not sys.stdin.isatty():
        extra[sys.stdin.fileno()] = _CommandChannel(emulator, sys.stdin.fileno(), sys.stdout).on_ready
    try:
        emulator.serve(extra)
    except KeyboardInterrupt:
        pass
    finally:
        if args.link and os.path.islink(args.link):
            os.unlink(args.link)


if __name__ == "__main__":
    main()
