"""Recorder node logic: sample the robot at `fps`, run episodes, stream them to the saver.

At every sample the follower's joints become `observation.state`, the leader's
become `action`, and the latest frame of each camera is attached. Frames are
streamed to the saver as they are taken, so ending an episode only sends a small
`end` message: the recorder is ready for the next episode within milliseconds
(the "save response time"), and the saver encodes while recording continues.
With `wait_for_save` (synchronous saving) the recorder instead pauses after `end`
until the saver reports the episode committed.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable

from operating_platform.hardware.base import SO101_JOINT_NAMES

from .messages import (
    EpisodeLayout,
    ImageMsg,
    JointMsg,
    MessageError,
    SeqTracker,
    decode_image,
    decode_joint,
    decode_key,
    decode_status,
    encode_episode_control,
    encode_episode_frame,
    encode_status,
)
from .problems import ProblemLog
from .settings import env_bool, setting

logger = logging.getLogger(__name__)
Emit = Callable[[str, object, dict], None]

KEYS = {"n": "end episode and save", "r": "re-record (discard episode)", "p": "proceed from reset", "e": "exit"}
CAMERA_INPUT_PREFIX = "camera_"
STATUS_EVERY_FRAMES = 10


@dataclass
class RecorderConfig:
    fps: int = 30
    episode_time_s: float = 4.0
    reset_time_s: float = 1.0
    num_episodes: int = 3
    cameras: list[str] = field(default_factory=lambda: ["top", "wrist"])
    task: str = "pick the cube and place it in the box"
    wait_for_save: bool = False
    max_staleness_s: float = 1.0
    joint_names: list[str] = field(default_factory=lambda: list(SO101_JOINT_NAMES))

    def __post_init__(self) -> None:
        problems = []
        if self.fps <= 0:
            problems.append(f"fps={self.fps} must be > 0")
        if self.episode_time_s <= 0:
            problems.append(f"episode_time_s={self.episode_time_s} must be > 0")
        if self.reset_time_s < 0:
            problems.append(f"reset_time_s={self.reset_time_s} must be >= 0")
        if self.num_episodes <= 0:
            problems.append(f"num_episodes={self.num_episodes} must be > 0")
        if len(set(self.cameras)) != len(self.cameras):
            problems.append(f"cameras {self.cameras} has duplicates")
        if problems:
            raise ValueError("recorder config: " + "; ".join(problems))

    @property
    def episode_frames(self) -> int:
        return max(1, round(self.episode_time_s * self.fps))

    @classmethod
    def from_env(cls, env: dict[str, str] = os.environ) -> "RecorderConfig":
        def get(name, cast, default):
            return setting(env, "recorder", name, cast, default)

        return cls(
            fps=get("FPS", int, 30),
            episode_time_s=get("EPISODE_TIME_S", float, 4.0),
            reset_time_s=get("RESET_TIME_S", float, 1.0),
            num_episodes=get("NUM_EPISODES", int, 3),
            cameras=[c for c in get("RECORD_CAMERAS", str, "top,wrist").split(",") if c],
            task=get("TASK", str, cls.task),
            wait_for_save=not get("USE_ASYNC_SAVE", env_bool, True),
            max_staleness_s=get("MAX_STALENESS_S", float, 1.0),
        )


class Phase:
    WAITING_FOR_INPUTS = "waiting_for_inputs"
    RECORDING = "recording"
    SAVING = "saving"  # synchronous saving only: paused until the saver has committed
    RESETTING = "resetting"
    DONE = "done"


@dataclass
class Staleness:
    """Age of an input's latest message when it was sampled, in ms."""

    count: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0

    def add(self, age_ms: float) -> None:
        self.count += 1
        self.total_ms += age_ms
        self.max_ms = max(self.max_ms, age_ms)

    def summary(self) -> dict:
        return {"mean_ms": round(self.total_ms / self.count, 2) if self.count else None, "max_ms": round(self.max_ms, 2)}


class Recorder:
    """Event-driven: feed it `on_input(id, value, metadata)`; it emits `episode` and `status`."""

    def __init__(self, config: RecorderConfig, emit: Emit, clock_ns: Callable[[], int] = time.time_ns):
        self.config = config
        self._emit = emit
        self._clock_ns = clock_ns
        self.phase = Phase.WAITING_FOR_INPUTS
        self.layout: EpisodeLayout | None = None
        self.latest: dict[str, ImageMsg | JointMsg] = {}
        self.input_seq: dict[str, SeqTracker] = {}
        self.problems = ProblemLog("recorder")
        self.period_ns = int(1e9 / config.fps)
        self.seq = 0  # of the episode stream
        self.episode = 0  # session episode number (a discarded episode is re-recorded under the same number)
        self.frame_index = 0
        self.next_sample_ns = 0
        self.reset_deadline_ns = 0
        self.episodes_saved = 0
        self.episodes_discarded = 0
        self.frames_sent = 0
        self.frames_kept = 0  # frames of episodes ended with `end` (to compare with what is committed)
        self.stale_skips = 0
        self.staleness: dict[str, Staleness] = {}
        self.save_response_ms: list[float] = []
        self.send_max_ms = 0.0  # longest hand-over of one message to the saver (backpressure shows here)
        self.sample_gap_max_ms = 0.0  # longest time between two samples of an episode
        self._last_sample_ns = 0
        self._end_seq = 0
        self._end_trigger_ns = 0
        self._finish_after_save = False
        self.required_inputs = ["leader", "follower"] + [CAMERA_INPUT_PREFIX + c for c in config.cameras]

    @property
    def done(self) -> bool:
        return self.phase == Phase.DONE

    # ------------------------------------------------------------------ events

    def on_input(self, input_id: str, value: object, metadata: dict | None) -> None:
        now = self._clock_ns()
        try:
            if input_id == "tick":
                self.on_tick(now)
            elif input_id in ("leader", "follower"):
                self._store(input_id, decode_joint(value, metadata, expected_names=self.config.joint_names))
            elif input_id.startswith(CAMERA_INPUT_PREFIX) and input_id in self.required_inputs:
                self._store(input_id, self._check_shape(input_id, decode_image(value, metadata)))
            elif input_id == "key":
                self.on_key(decode_key(value), now)
            elif input_id == "saver_status":
                self.on_saver_status(decode_status(value), now)
            else:
                self.problems.report(input_id, "unexpected input id")
        except MessageError as exc:
            self.problems.report(input_id, exc)

    def _store(self, input_id: str, msg: ImageMsg | JointMsg) -> None:
        self.input_seq.setdefault(input_id, SeqTracker()).see(msg.seq)
        self.latest[input_id] = msg

    def _check_shape(self, input_id: str, msg: ImageMsg) -> ImageMsg:
        """A camera must keep the resolution the dataset was started with."""
        if self.layout is not None:
            expected = self.layout.cameras[input_id[len(CAMERA_INPUT_PREFIX):]]
            if msg.frame.shape[:2] != expected:
                raise MessageError(f"image: {msg.frame.shape[1]}x{msg.frame.shape[0]} but the dataset records {expected[1]}x{expected[0]}")
        return msg

    def on_tick(self, now: int) -> None:
        if self.phase == Phase.WAITING_FOR_INPUTS and all(k in self.latest for k in self.required_inputs):
            self._begin_episode(now)
        elif self.phase == Phase.RESETTING and now >= self.reset_deadline_ns:
            self._begin_episode(now)
        if self.phase != Phase.RECORDING:
            return
        # Half a period of tolerance, so a timer slightly faster than fps does not halve the rate;
        # and never two samples within half a period, so ticks queued during a stall do not
        # turn into a burst of duplicate frames.
        due = now >= self.next_sample_ns - self.period_ns // 2
        if due and (self.frame_index == 0 or now - self._last_sample_ns >= self.period_ns // 2):
            self._sample(now)
            self.next_sample_ns = max(self.next_sample_ns + self.period_ns, now - self.period_ns)
        if self.frame_index >= self.config.episode_frames:
            self._end_episode(now, save=True)

    def on_key(self, key: str, now: int) -> None:
        if key not in KEYS:
            self.problems.report("key", f"unknown key {key!r} (keys: {', '.join(KEYS)})")
            return
        logger.info("[recorder] key %r (%s) in phase %s", key, KEYS[key], self.phase)
        if key == "e":
            self.stop(now)
        elif self.phase == Phase.RECORDING and key in ("n", "r"):
            self._end_episode(now, save=(key == "n"))
        elif self.phase == Phase.RESETTING and key in ("n", "p"):
            self._begin_episode(now)

    def on_saver_status(self, status: dict, now: int) -> None:
        if status.get("fatal") and self.phase != Phase.DONE:
            logger.error("[recorder] stopping: the saver cannot save (%s)", status["fatal"])
            self._finish()  # recording on would only produce frames nobody can keep
            return
        if self.phase == Phase.SAVING and status.get("handled_seq", 0) >= self._end_seq:
            self._ready_for_next(now)

    def stop(self, now: int | None = None) -> None:
        """Exit: the episode being recorded is saved (it is real data), then the saver is told to finish."""
        now = self._clock_ns() if now is None else now
        if self.phase == Phase.DONE:
            return
        if self.phase == Phase.RECORDING and self.frame_index > 0:
            self._finish_after_save = True
            self._end_episode(now, save=True)  # finishes at once, or (sync) once the saver has it
            return
        self._finish()

    # ------------------------------------------------------------------ episode life

    def _begin_episode(self, now: int) -> None:
        if self.layout is None:
            cameras = {c: self.latest[CAMERA_INPUT_PREFIX + c].frame.shape[:2] for c in self.config.cameras}
            self.layout = EpisodeLayout(list(self.config.joint_names), cameras)
        self.phase = Phase.RECORDING
        self.frame_index = 0
        self.next_sample_ns = now
        self.staleness = {}
        self._send(*encode_episode_control("begin", self._next_seq(), self.episode, self.config.task, self.layout))
        logger.info("[recorder] episode %d recording (%d frames)", self.episode, self.config.episode_frames)
        self._publish_status(now)

    def _sample(self, now: int) -> None:
        ages = {k: (now - self.latest[k].stamp_ns) / 1e6 for k in self.required_inputs}
        if max(ages.values()) > self.config.max_staleness_s * 1e3:
            self.stale_skips += 1
            stalest = max(ages, key=ages.get)
            self.problems.report("sample", f"skipped: {stalest} is {ages[stalest]:.0f} ms old")
            return
        for k, age in ages.items():
            self.staleness.setdefault(k, Staleness()).add(age)
        images = {c: self.latest[CAMERA_INPUT_PREFIX + c].frame for c in self.config.cameras}
        self._send(*encode_episode_frame(
            self._next_seq(), self.episode, self.frame_index, self.layout,
            state=self.latest["follower"].positions, action=self.latest["leader"].positions,
            images=images, stamp_ns=now,
        ))
        if self.frame_index > 0:
            self.sample_gap_max_ms = max(self.sample_gap_max_ms, (now - self._last_sample_ns) / 1e6)
        self._last_sample_ns = now
        self.frame_index += 1
        self.frames_sent += 1
        if self.frame_index % STATUS_EVERY_FRAMES == 0:
            self._publish_status(now)

    def _end_episode(self, now: int, save: bool) -> None:
        self._end_trigger_ns = now
        kind = "end" if save else "discard"
        self._end_seq = self._next_seq()
        self._send(*encode_episode_control(kind, self._end_seq, self.episode))
        stale = {k: v.summary() for k, v in self.staleness.items()}
        logger.info("[recorder] episode %d %s after %d frames; input staleness %s", self.episode,
                    "saved" if save else "discarded (re-record)", self.frame_index, stale)
        if save:
            self.episodes_saved += 1
            self.frames_kept += self.frame_index
            self.episode += 1
        else:
            self.episodes_discarded += 1
        if save and self.config.wait_for_save:
            self.phase = Phase.SAVING
            self._publish_status(now)
        else:
            self._ready_for_next(self._clock_ns())

    def _ready_for_next(self, now: int) -> None:
        self.save_response_ms.append(round((now - self._end_trigger_ns) / 1e6, 3))
        if self._finish_after_save or self.episodes_saved >= self.config.num_episodes:
            self._finish()
            return
        self.phase = Phase.RESETTING
        self.reset_deadline_ns = now + int(self.config.reset_time_s * 1e9)
        self._publish_status(now)
        if self.config.reset_time_s == 0:
            self._begin_episode(now)

    def _finish(self) -> None:
        self._send(*encode_episode_control("finish", self._next_seq(), self.episode))
        self.phase = Phase.DONE
        logger.info("[recorder] done: %d saved, %d discarded, %d frames sent, save response ms %s",
                    self.episodes_saved, self.episodes_discarded, self.frames_sent, self.save_response_ms)
        self._publish_status(self._clock_ns())

    # ------------------------------------------------------------------ output

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _send(self, value: object, metadata: dict) -> None:
        started = time.perf_counter()
        self._emit("episode", value, metadata)
        self.send_max_ms = max(self.send_max_ms, (time.perf_counter() - started) * 1e3)

    def status(self) -> dict:
        return {
            "phase": self.phase,
            "episode": self.episode,
            "num_episodes": self.config.num_episodes,
            "frame": self.frame_index,
            "episode_frames": self.config.episode_frames,
            "episodes_saved": self.episodes_saved,
            "episodes_discarded": self.episodes_discarded,
            "frames_sent": self.frames_sent,
            "frames_kept": self.frames_kept,
            "stale_skips": self.stale_skips,
            "rejected": dict(self.problems.counts),
            "input_gaps": {k: t.gaps for k, t in self.input_seq.items()},
            "staleness": {k: v.summary() for k, v in self.staleness.items()},
            "save_response_ms": self.save_response_ms,
            "send_max_ms": round(self.send_max_ms, 2),
            "sample_gap_max_ms": round(self.sample_gap_max_ms, 2),
            "episode_seq": self.seq,
        }

    def _publish_status(self, now: int) -> None:
        self._emit("status", encode_status({**self.status(), "stamp_ns": now}), {})
