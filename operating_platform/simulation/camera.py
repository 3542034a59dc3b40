"""A simulated camera: moving, textured, camera-specific frames.

Frames must differ from one another and from other cameras, and compress like real
video (smooth regions, edges, a little sensor noise), otherwise encoder timings and
dataset sizes measured with the simulator would mean nothing.
"""

from __future__ import annotations

import time
import zlib
from typing import Callable

import numpy as np


class SimCamera:
    """A scene texture panning slowly behind a moving coloured block."""

    def __init__(self, name: str = "sim", width: int = 640, height: int = 480, fps: int = 30,
                 clock: Callable[[], float] = time.monotonic):
        if width <= 0 or height <= 0 or fps <= 0:
            raise ValueError(f"SimCamera {name!r}: width/height/fps must be positive, got {width}x{height}@{fps}")
        self.name, self.width, self.height, self.fps = name, width, height, fps
        self._clock = clock
        self._t0 = clock()
        self._rng = np.random.default_rng(zlib.crc32(name.encode()))
        self._scene = self._make_scene(self._rng, 2 * height, 2 * width)
        self._block_color = self._rng.integers(60, 255, size=3, dtype=np.uint8)
        self._speed = self._rng.uniform(20, 60, size=2)  # pixels per second of the pan (y, x)

    @staticmethod
    def _make_scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
        x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
        channels = []
        for _ in range(3):
            fy, fx = rng.uniform(2, 9, size=2)
            py, px = rng.uniform(0, 2 * np.pi, size=2)
            channels.append(0.5 + 0.25 * np.sin(2 * np.pi * fy * y + py) + 0.25 * np.cos(2 * np.pi * fx * x + px))
        scene = np.stack(channels, axis=-1) * 200 + 20
        for _ in range(12):  # hard-edged objects on the table
            h, w = rng.integers(height // 20, height // 5), rng.integers(width // 20, width // 5)
            top, left = rng.integers(0, height - h), rng.integers(0, width - w)
            scene[top:top + h, left:left + w] = rng.uniform(0, 255, size=3)
        scene += rng.normal(0, 3, size=scene.shape).astype(np.float32)  # sensor noise
        return np.clip(scene, 0, 255).astype(np.uint8)

    def read(self) -> np.ndarray:
        t = self._clock() - self._t0
        oy = int(t * self._speed[0]) % self.height
        ox = int(t * self._speed[1]) % self.width
        frame = self._scene[oy:oy + self.height, ox:ox + self.width].copy()
        size = max(8, min(self.height, self.width) // 6)
        cy = int((0.5 + 0.4 * np.sin(0.7 * t)) * (self.height - size))
        cx = int((0.5 + 0.4 * np.cos(0.5 * t)) * (self.width - size))
        frame[cy:cy + size, cx:cx + size] = self._block_color
        return frame

    def close(self) -> None:
        pass
