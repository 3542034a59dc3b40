"""Honest timing: was an episode sampled in real time at its fps?

Frames are stored on the 1/fps grid, so an episode sampled slower than real time
(a loaded machine, a slow camera) would silently look faster than it was. Each
episode's wall duration and longest sample gap are measured against its fps; a
slow episode is named, counted and recorded in meta/episodes_timing.jsonl (a side
file LeRobot's readers ignore), and TIMING_POLICY decides what happens to it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

TIMING_POLICIES = ("warn", "discard", "stop")
TIMING_FILE = "meta/episodes_timing.jsonl"
MAX_GAP_PERIODS = 2.0  # a gap longer than this many sample periods makes the episode slow
MAX_DURATION_ERROR = 0.05  # nor may the wall duration differ from frames/fps by more than 5 %


@dataclass
class EpisodeTiming:
    frames: int
    fps: int
    duration_s: float  # wall time from the first sample to one period after the last
    sample_gap_max_ms: float

    @property
    def expected_s(self) -> float:
        return self.frames / self.fps

    @property
    def slow(self) -> bool:
        period_ms = 1e3 / self.fps
        off = abs(self.duration_s - self.expected_s) > MAX_DURATION_ERROR * self.expected_s
        return self.frames > 1 and (self.sample_gap_max_ms > MAX_GAP_PERIODS * period_ms or off)

    def describe(self) -> str:
        return (f"{self.frames} frames took {self.duration_s:.2f} s (stored as {self.expected_s:.2f} s at "
                f"{self.fps} fps), longest sample gap {self.sample_gap_max_ms:.0f} ms")

    def to_metadata(self) -> dict:
        return {**asdict(self), "slow": self.slow}

    @classmethod
    def from_metadata(cls, meta: dict) -> "EpisodeTiming | None":
        try:
            return cls(int(meta["frames"]), int(meta["fps"]), float(meta["duration_s"]), float(meta["sample_gap_max_ms"]))
        except (KeyError, TypeError, ValueError):
            return None


class EpisodeClock:
    """Sample stamps of the episode being recorded."""

    def __init__(self, fps: int):
        self.fps = fps
        self.first_ns = 0
        self.last_ns = 0
        self.frames = 0
        self.gap_max_ns = 0

    def sample(self, now_ns: int) -> None:
        if self.frames == 0:
            self.first_ns = now_ns
        else:
            self.gap_max_ns = max(self.gap_max_ns, now_ns - self.last_ns)
        self.last_ns = now_ns
        self.frames += 1

    def timing(self) -> EpisodeTiming:
        duration_ns = self.last_ns - self.first_ns + int(1e9 / self.fps) if self.frames else 0
        return EpisodeTiming(self.frames, self.fps, round(duration_ns / 1e9, 4), round(self.gap_max_ns / 1e6, 2))


def append_timing(root: Path, episode_index: int, timing: EpisodeTiming) -> None:
    """One JSON line per saved episode; a later line for the same index supersedes an earlier one."""
    path = Path(root) / TIMING_FILE
    with path.open("a") as f:
        f.write(json.dumps({"episode_index": episode_index, **timing.to_metadata()}) + "\n")


def record_timing(root: Path, episode_index: int, timing: EpisodeTiming | None) -> str | None:
    """Append the episode's timing row, if it has one; a warning text when it cannot be written.

    The episode itself is saved either way: a missing timing row never costs its frames.
    """
    if timing is None:
        return None
    try:
        append_timing(root, episode_index, timing)
    except OSError as exc:
        return f"episode {episode_index}: its timing row was not written ({exc})"
    return None


def read_timing(root: Path) -> dict[int, dict]:
    path = Path(root) / TIMING_FILE
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["episode_index"]: row for row in rows}
