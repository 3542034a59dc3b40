"""Benchmark: SYNC_READ of 6 STS3215 servos through FeetechBus against the emulator on a real pty.

Prints reads per second and latency p50/p99, the wire-time baseline of a real
1 Mbaud bus computed from the same packets' byte counts (10 bits per byte,
servo return delay 0), the ratio measured/wire, and the driver's own CPU time
per read: what the Python driver costs on top of the bus. The emulator runs as
a separate process, as a USB adapter would, so it does not share our GIL.

    python benchmarks/bench_bus.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np

from operating_platform.hardware.feetech.bus import FeetechBus
from operating_platform.hardware.feetech.control_table import DEFAULT_BAUDRATE, register
from operating_platform.hardware.feetech.protocol import BROADCAST_ID, STATUS_OVERHEAD, Instruction, frame

IDS = [1, 2, 3, 4, 5, 6]
BITS_PER_BYTE = 10  # start + 8 data + stop


def wire_time_s(request_bytes: int, reply_bytes: int, baudrate: int = DEFAULT_BAUDRATE) -> float:
    return (request_bytes + reply_bytes) * BITS_PER_BYTE / baudrate


def measure(call, seconds: float) -> tuple[np.ndarray, float]:
    """Latencies of back-to-back calls for `seconds`, and the process CPU time per call."""
    latencies = []
    cpu_start = time.process_time()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t0)
    return np.array(latencies), (time.process_time() - cpu_start) / len(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each measurement")
    args = parser.parse_args()

    emulator = subprocess.Popen(
        [sys.executable, "-m", "operating_platform.hardware.feetech.emulator"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        port = emulator.stdout.readline().strip()
        position = register("Present_Position")
        request = len(frame(BROADCAST_ID, Instruction.SYNC_READ, bytes((position.address, position.size, *IDS))))
        replies = len(IDS) * (STATUS_OVERHEAD + position.size)
        wire = wire_time_s(request, replies)
        single_wire = len(IDS) * wire_time_s(len(frame(1, Instruction.READ, b"\0\0")), STATUS_OVERHEAD + position.size)

        with FeetechBus(port) as bus:
            measure(lambda: bus.sync_read("Present_Position", IDS), 0.5)  # warm-up
            sync, sync_cpu = measure(lambda: bus.sync_read("Present_Position", IDS), args.seconds)
            single, single_cpu = measure(lambda: [bus.read("Present_Position", i) for i in IDS], args.seconds / 2)
            retries = bus.retries_used

        p50, p99 = np.percentile(sync, [50, 99])
        print(f"SYNC_READ Present_Position x{len(IDS)} servos, {len(sync)} reads in {args.seconds:.1f} s on {port}")
        print(f"  reads/s             {len(sync) / sync.sum():10.0f}")
        print(f"  latency p50         {p50 * 1e3:10.3f} ms")
        print(f"  latency p99         {p99 * 1e3:10.3f} ms")
        print(f"  wire baseline       {wire * 1e3:10.3f} ms  ({request} + {replies} bytes at {DEFAULT_BAUDRATE} baud)")
        print(f"  ratio p50 / wire    {p50 / wire:10.2f}x")
        print(f"  driver CPU per read {sync_cpu * 1e3:10.3f} ms  (added on top of the wire time on a real bus)")
        print(f"  30 Hz budget used   {(wire + sync_cpu) * 30 * 100:10.2f} %  (wire + driver, per arm)")
        print(f"  retries             {retries:10d}")
        print(f"6 x READ for comparison: p50 {np.percentile(single, 50) * 1e3:.3f} ms "
              f"(wire {single_wire * 1e3:.3f} ms, driver CPU {single_cpu * 1e3:.3f} ms)")
    finally:
        emulator.terminate()
        emulator.wait(timeout=5)


if __name__ == "__main__":
    main()
