"""Recorder node logic: sample the robot at `fps`, run episodes, stream them to the saver.

At every sample the follower's joints become `observation.state`, the leader's
become `action`, and the latest frame of each camera is attached. Frames are
streamed to the saver as they are taken, so ending an episode only sends a small
`end` message: the recorder is ready for the next episode within milliseconds
(the "save response time"), and the saver encodes while recording continues.
With `wait_for_save` (synchronous saving) the recorder instead pauses after `end`
until the saver reports the episode committed.

Nothing lost (DESIGN.md): the saver acknowledges what it took (`handled_seq` on
its status). At most `saver_window` messages (and `saver_window_mb`) are in
flight (dora's backpressure queue drops past its cap, max(10 x queue_size, 100));
the rest wait in a bounded outbox, and when that is full sampling pauses with a
warning. What the saver has not acknowledged when dora STOPs, or when the saver
dies or goes silent, is written to the recorder's note on disk (stop_note.py).
The recorder never exits before
the saver acknowledged `finish` (a node's unsent outputs are dropped when it
exits), then compares frames recorded with the saver's committed count. A saver
that dies or goes silent, or a camera/arm that closes or goes silent, ends the
session with one error; every wait is bounded. dora's STOP is the last event a
node gets: the saver then saves the episode in progress itself.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from operating_platform.hardware.base import SO101_JOINT_NAMES

from .messages import (
    DORA_MESSAGE_LIMIT,
    KEYS,
    METADATA_ALLOWANCE,
    SAVE_RESPONSE_WINDOW,
    EpisodeLayout,
    ImageMsg,
    JointMsg,
    MessageError,
    RecorderStatus,
    SaverStatus,
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
from .settings import DEFAULTS, EnvSettings
from .stop_note import NOTE_DIR, write_stop_note
from .summary import recorder_line
from .timing import TIMING_POLICIES, EpisodeClock

logger = logging.getLogger(__name__)
Emit = Callable[[str, object, dict], None]

CAMERA_INPUT_PREFIX = "camera_"
STATUS_EVERY_FRAMES = 10


@dataclass
class RecorderConfig:
    fps: int = DEFAULTS.fps
    episode_time_s: float = DEFAULTS.episode_time_s
    reset_time_s: float = DEFAULTS.reset_time_s
    num_episodes: int = DEFAULTS.num_episodes
    cameras: list[str] = field(default_factory=lambda: camera_names(DEFAULTS.record_cameras))
    task: str = DEFAULTS.single_task
    wait_for_save: bool = not DEFAULTS.use_async_save
    max_staleness_s: float = DEFAULTS.max_staleness_s
    joint_names: list[str] = field(default_factory=lambda: list(SO101_JOINT_NAMES))
    input_timeout_s: float = DEFAULTS.input_timeout_s
    start_timeout_s: float = DEFAULTS.start_timeout_s
    saver_timeout_s: float = DEFAULTS.saver_timeout_s
    save_timeout_s: float = DEFAULTS.async_save_timeout_s
    saver_window: int = DEFAULTS.saver_window
    saver_window_mb: int = DEFAULTS.saver_window_mb
    outbox_mb: int = DEFAULTS.recorder_outbox_mb
    timing_policy: str = DEFAULTS.timing_policy

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
        if self.timing_policy not in TIMING_POLICIES:
            problems.append(f"timing_policy={self.timing_policy!r} must be one of {', '.join(TIMING_POLICIES)}")
        for name in ("input_timeout_s", "start_timeout_s", "saver_timeout_s", "save_timeout_s", "saver_window", "saver_window_mb",
                     "outbox_mb"):
            if getattr(self, name) <= 0:
                problems.append(f"{name}={getattr(self, name)} must be > 0")
        if problems:
            raise ValueError("recorder config: " + "; ".join(problems))

    @property
    def episode_frames(self) -> int:
        return max(1, round(self.episode_time_s * self.fps))

    @classmethod
    def from_env(cls, env: dict[str, str] = os.environ) -> "RecorderConfig":
        s = EnvSettings(env, "recorder")
        return cls(**s.shared_with(cls), cameras=camera_names(s.record_cameras), task=s.single_task,
                   wait_for_save=not s.use_async_save, save_timeout_s=s.async_save_timeout_s, outbox_mb=s.recorder_outbox_mb)


def camera_names(record_cameras: str) -> list[str]:
    return [c for c in record_cameras.split(",") if c]


class Phase:
    WAITING_FOR_INPUTS = "waiting_for_inputs"
    RECORDING = "recording"
    SAVING = "saving"  # synchronous saving only: paused until the saver has committed
    RESETTING = "resetting"
    FINISHING = "finishing"  # `finish` sent: waiting for the saver to acknowledge it
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
    """Event-driven: feed it `on_input(id, value, metadata)` and `on_closed(id)`; it emits `episode` and `status`."""

    def __init__(self, config: RecorderConfig, emit: Emit, clock_ns: Callable[[], int] = time.time_ns,
                 say: Callable[[str], None] = functools.partial(print, flush=True)):
        self.config = config
        self._emit = emit
        self._clock_ns = clock_ns
        self._say = say
        self.phase = Phase.WAITING_FOR_INPUTS
        self.layout: EpisodeLayout | None = None
        self.latest: dict[str, ImageMsg | JointMsg] = {}
        self.arrived_ns: dict[str, int] = {}  # when each input last delivered a message (liveness)
        self.input_seq: dict[str, SeqTracker] = {}
        self.problems = ProblemLog("recorder")
        self.period_ns = int(1e9 / config.fps)
        self.seq = 0  # of the episode stream
        self.episode = 0  # session episode number (a discarded episode is re-recorded under the same number)
        self.frame_index = 0
        self.next_sample_ns = 0
        self.reset_deadline_ns = 0
        self.episodes_recorded = 0  # ended with `end`; saved only once the saver says committed
        self.episodes_discarded = 0
        self.slow_episodes = 0
        self.frames_sent = 0
        self.frames_kept = 0  # frames of episodes ended with `end` (to compare with what is committed)
        self.stale_skips = 0
        self.backpressure_skips = 0
        self.staleness: dict[str, Staleness] = {}
        self.save_response_ms: deque[float] = deque(maxlen=SAVE_RESPONSE_WINDOW)  # the most recent episodes'
        self.save_response_count = 0
        self.save_response_max_ms = 0.0
        self.send_max_ms = 0.0  # longest hand-over of one message to dora
        self.sample_gap_max_ms = 0.0  # longest time between two samples of an episode
        self.clock = EpisodeClock(config.fps)
        self.errors: list[str] = []  # why the session did not end cleanly (empty = it did)
        self.saver = SaverStatus()  # the saver's latest status
        self.acked_seq = 0  # the saver has handled the episode stream up to here
        self.outbox: deque[tuple[int, object, dict, int]] = deque()  # (seq, value, metadata, bytes) not yet sent
        self.outbox_bytes = 0
        self.in_flight: deque[tuple[int, int, object, dict]] = deque()  # (seq, bytes, value, metadata) not acknowledged
        self.in_flight_bytes = 0
        self._started_ns = clock_ns()
        self._saver_seen_ns = 0
        self._last_sample_ns = 0
        self._end_seq = 0
        self._finish_seq = 0
        self._end_trigger_ns = 0
        self._finish_after_save = False
        self._begin: tuple[object, dict] | None = None  # the latest episode's `begin` (its task, for the note)
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
                self._store(input_id, decode_joint(value, metadata, expected_names=self.config.joint_names), now)
            elif input_id.startswith(CAMERA_INPUT_PREFIX) and input_id in self.required_inputs:
                self._store(input_id, self._check_shape(input_id, decode_image(value, metadata)), now)
            elif input_id == "key":
                self.on_key(decode_key(value), now)
            elif input_id == "saver_status":
                self.on_saver_status(decode_status(value, SaverStatus), now)
            else:
                self.problems.report("unknown input", f"input id {input_id!r} is not part of the recorder's contract")
        except MessageError as exc:
            self.problems.report(input_id, exc)

    def on_closed(self, input_id: str) -> None:
        """An input's sender exited: the saver (nothing can be kept any more) or a required device."""
        if self.done:
            return
        if input_id == "saver_status":
            self._saver_lost("the saver exited (its status stream closed)")
        elif input_id in self.required_inputs:
            self._end_session(f"required input {input_id} closed (its node exited)")

    def _store(self, input_id: str, msg: ImageMsg | JointMsg, now: int) -> None:
        if not self.input_seq.setdefault(input_id, SeqTracker()).see(msg.seq):
            self.problems.report("out of order", f"{input_id} message {msg.seq} is not newer than {self.input_seq[input_id].last}")
            return
        self.latest[input_id] = msg
        self.arrived_ns[input_id] = now

    def _check_shape(self, input_id: str, msg: ImageMsg) -> ImageMsg:
        """A camera must keep the resolution the dataset was started with."""
        if self.layout is not None:
            expected = self.layout.cameras[input_id[len(CAMERA_INPUT_PREFIX):]]
            if msg.frame.shape[:2] != expected:
                raise MessageError(f"image: {msg.frame.shape[1]}x{msg.frame.shape[0]} but the dataset records {expected[1]}x{expected[0]}")
        return msg

    def on_tick(self, now: int) -> None:
        self._pump()
        self._check_liveness(now)
        cameras_seen = all(CAMERA_INPUT_PREFIX + c in self.latest for c in self.config.cameras)
        if self.phase == Phase.WAITING_FOR_INPUTS and self.layout is None and cameras_seen and not self._fix_layout():
            return  # refused before recording: a camera too large for dora
        if self.phase == Phase.WAITING_FOR_INPUTS and self._saver_seen_ns and not self._not_ready(now):
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
        if self.phase == Phase.RECORDING and self.frame_index >= self.config.episode_frames:
            self._end_episode(now, save=True)

    def on_key(self, key: str, now: int) -> None:
        if key not in KEYS:
            self.problems.report("key", f"unknown key {key!r} (keys: {', '.join(KEYS)})")
            return
        self._say(f"[recorder] key {key!r} ({KEYS[key]}) in phase {self.phase}")
        if key == "e":
            self.stop(now)
        elif self.phase == Phase.RECORDING and key in ("n", "r"):
            self._end_episode(now, save=(key == "n"))
        elif self.phase == Phase.RESETTING and key in ("n", "p"):
            self._begin_episode(now)

    def on_saver_status(self, status: SaverStatus, now: int) -> None:
        self._saver_seen_ns = now
        self.saver = status
        self.acked_seq = max(self.acked_seq, status.handled_seq)
        while self.in_flight and self.in_flight[0][0] <= self.acked_seq:
            self.in_flight_bytes -= self.in_flight.popleft()[1]
        self._pump()
        if self.done:
            return
        if status.fatal and self.phase != Phase.FINISHING:
            self._error(f"the saver cannot save ({status.fatal}): recording stops")
            self._finish()  # recording on would only produce frames nobody can keep
            return
        if self.phase == Phase.SAVING and self.acked_seq >= self._end_seq:
            self._ready_for_next(now)
        elif self.phase == Phase.FINISHING and status.done and self.acked_seq >= self._finish_seq:
            self._finished()

    def stop(self, now: int | None = None) -> None:
        """Exit: the episode being recorded is saved (it is real data), then the saver is told to finish."""
        now = self._clock_ns() if now is None else now
        if self.phase in (Phase.DONE, Phase.FINISHING):
            return
        if self.phase == Phase.RECORDING and self.frame_index > 0:
            self._finish_after_save = True
            self._end_episode(now, save=True)  # finishes at once, or (sync) once the saver has it
            return
        if self.phase != Phase.SAVING:
            self._finish()
        self._finish_after_save = True

    def on_dora_stop(self) -> None:
        """dora's STOP (Ctrl-C on `dora run`, SIGTERM, `dora stop`) is the last event: nothing sent
        from now on reaches the saver, which saves the episode in progress on its own STOP."""
        if self.done:
            return
        failed = self._write_note()  # dora drops what is in flight when the saver's stream ends: hand it over on disk
        unsent = sum(1 for _, _, m, _ in self.outbox if m.get("kind") == "frame") if failed else 0
        if unsent:
            self._error(f"dora stopped the dataflow while {unsent} recorded frames waited for the saver's credits; "
                        f"they are not handed over ({failed})")
        logger.warning("[recorder] stopped by dora in phase %s: episode %d's %d frames are saved by the saver on "
                       "its STOP; frames sent %d, acknowledged up to message %d of %d", self.phase, self.episode,
                       self.frame_index, self.frames_sent, self.acked_seq, self.seq)
        self._keep_in_progress()
        self.phase = Phase.DONE
        # The recorder's committed count stops here; the saver's own summary line has the final one.
        self._say(recorder_line(self.status()) + "; committed so far: the saver commits the rest on its STOP "
                  "and its [saver] line has the final count")

    # ------------------------------------------------------------------ liveness

    def _check_liveness(self, now: int) -> None:
        if self.done:
            return
        if self._saver_seen_ns:
            waiting_on_save = self.phase in (Phase.SAVING, Phase.FINISHING)
            limit = self.config.save_timeout_s if waiting_on_save else self.config.saver_timeout_s
            if now - self._saver_seen_ns > limit * 1e9:
                self._saver_lost(f"the saver has sent nothing for {limit:g} s (hung)")
                return
        elif now - self._started_ns > self.config.start_timeout_s * 1e9:
            self._saver_lost(f"the saver sent no status within {self.config.start_timeout_s:g} s of start")
            return
        if self.phase == Phase.FINISHING:
            return
        if self.phase == Phase.WAITING_FOR_INPUTS:
            missing = self._not_ready(now)
            if missing and now - self._started_ns > self.config.start_timeout_s * 1e9:
                self._end_session(f"required inputs {', '.join(missing)} sent nothing fresh within "
                                  f"{self.config.start_timeout_s:g} s of start")
            return
        silent = {k: (now - t) / 1e9 for k, t in self.arrived_ns.items() if now - t > self.config.input_timeout_s * 1e9}
        if silent:
            name = max(silent, key=silent.get)
            self._end_session(f"required input {name} sent nothing for {silent[name]:.1f} s "
                              f"(INPUT_TIMEOUT_S={self.config.input_timeout_s:g})")

    def _not_ready(self, now: int) -> list[str]:
        """Required inputs without a message younger than max_staleness_s: recording waits for them."""
        limit = self.config.max_staleness_s * 1e9
        return [k for k in self.required_inputs if k not in self.latest or now - self.latest[k].stamp_ns > limit]

    def _end_session(self, reason: str) -> None:
        """A device is gone: keep what was recorded, finish, and report the reason."""
        self._error(f"{reason}: the session ends; the frames recorded so far are saved")
        self.stop()

    def _saver_lost(self, reason: str) -> None:
        """Nothing can reach a dataset any more: stop at once (no more 'saved' episodes nobody keeps)."""
        self._keep_in_progress()
        root = self.saver.root or "the dataset"
        unacked = sum(1 for _, m in self._unacknowledged() if m.get("kind") == "frame")
        failed = self._write_note()
        kept = (f"the {unacked} frames it had not acknowledged are kept in the recorder's note {Path(root) / NOTE_DIR}"
                if failed is None else f"the {unacked} frames it had not acknowledged are lost ({failed})")
        self._error(f"{reason}: recording stopped; {self.frames_kept} frames recorded, "
                    f"{self.saver.frames_received} taken by the saver, {self.saver.frames_committed} committed; what it took "
                    f"stays in its spool, {kept}; commit them with: python scripts/recover_episodes.py {root} --include-partial")
        self.outbox.clear()
        self.outbox_bytes = 0
        self.in_flight.clear()
        self.in_flight_bytes = 0
        self.phase = Phase.DONE
        self._log_summary()
        self._publish_status(self._clock_ns())

    def _unacknowledged(self) -> list[tuple[object, dict]]:
        """What the saver has not acknowledged; frames of an episode whose `begin` it did are preceded by that
        `begin` again (their task, should the saver have spooled none of them)."""
        pending = [(v, m) for _, _, v, m in self.in_flight] + [(v, m) for _, v, m, _ in self.outbox]
        first = pending[0][1] if pending else {}
        if first.get("kind") == "frame" and self._begin is not None and first["seq"] > self._begin[1]["seq"]:
            pending.insert(0, self._begin)
        return pending

    def _write_note(self) -> str | None:
        """Hand what the saver has not acknowledged over on disk (stop_note.py); why it could not, or None."""
        if not self.saver.root:
            return "the saver never said where its dataset is"
        try:
            write_stop_note(self.saver.root, self._unacknowledged())
        except OSError as exc:
            return f"their note could not be written: {exc}"
        return None

    def _keep_in_progress(self) -> None:
        """The session ends without `end`: the episode in progress still counts as recorded."""
        if self.phase == Phase.RECORDING:
            self.frames_kept += self.frame_index
            self.frame_index = 0

    def _error(self, text: str) -> None:
        self.errors.append(text)
        logger.error("[recorder] ✗ %s", text)

    # ------------------------------------------------------------------ episode life

    def _fix_layout(self) -> bool:
        """The frame layout, from the first image of every camera; False (refused) when dora cannot carry it."""
        cameras = {c: self.latest[CAMERA_INPUT_PREFIX + c].frame.shape[:2] for c in self.config.cameras}
        layout = EpisodeLayout(list(self.config.joint_names), cameras)
        if layout.nbytes + METADATA_ALLOWANCE > DORA_MESSAGE_LIMIT:
            sizes = ", ".join(f"camera {c} {w}x{h}" for c, (h, w) in cameras.items())
            self._error(f"cannot record {sizes}: one frame is {layout.nbytes} bytes, over dora's "
                        f"{DORA_MESSAGE_LIMIT}-byte message limit; lower the resolution or record fewer cameras")
            self._finish()
            return False
        self.layout = layout
        return True

    def _begin_episode(self, now: int) -> None:
        if self.layout is None and not self._fix_layout():
            return
        self.phase = Phase.RECORDING
        self.frame_index = 0
        self.next_sample_ns = now
        self.staleness = {}
        self.clock = EpisodeClock(self.config.fps)
        self._begin = encode_episode_control("begin", self._next_seq(), self.episode, self.config.task, self.layout)
        self._send(*self._begin)
        logger.info("[recorder] episode %d recording (%d frames)", self.episode, self.config.episode_frames)
        self._publish_status(now)

    def _sample(self, now: int) -> None:
        ages = {k: (now - self.latest[k].stamp_ns) / 1e6 for k in self.required_inputs}
        if max(ages.values()) > self.config.max_staleness_s * 1e3:
            self.stale_skips += 1
            stalest = max(ages, key=ages.get)
            self.problems.report("stale sample", f"skipped: {stalest} is {ages[stalest]:.0f} ms old")
            return
        if self.outbox_bytes + self.layout.nbytes > self.config.outbox_mb * 2**20:
            self.backpressure_skips += 1
            self.problems.report("saver behind", f"sample skipped: {len(self.outbox)} messages wait for the saver "
                                                 f"({self.outbox_bytes / 2**20:.0f} MiB); sampling pauses until it catches up")
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
        self.clock.sample(now)
        self.frame_index += 1
        self.frames_sent += 1
        if self.frame_index % STATUS_EVERY_FRAMES == 0:
            self._publish_status(now)

    def _end_episode(self, now: int, save: bool) -> None:
        self._end_trigger_ns = now
        timing = self.clock.timing()
        stop_for_timing = False
        if save and timing.slow:
            self.slow_episodes += 1
            logger.warning("[recorder] ⚠ episode %d ran slower than real time: %s (TIMING_POLICY=%s)",
                           self.episode, timing.describe(), self.config.timing_policy)
            if self.config.timing_policy == "discard":
                save = False
            elif self.config.timing_policy == "stop":
                stop_for_timing = True
        kind = "end" if save else "discard"
        self._end_seq = self._next_seq()
        self._send(*encode_episode_control(kind, self._end_seq, self.episode, timing=timing.to_metadata() if save else None))
        stale = {k: v.summary() for k, v in self.staleness.items()}
        logger.info("[recorder] episode %d %s after %d frames; input staleness %s", self.episode,
                    "ended (saving)" if save else "discarded (re-record)", self.frame_index, stale)
        if save:
            self.episodes_recorded += 1
            self.frames_kept += self.frame_index
            self.episode += 1
        else:
            self.episodes_discarded += 1
        self.frame_index = 0
        if stop_for_timing:
            self._error(f"episode {self.episode - 1} ran slower than real time ({timing.describe()}); "
                        "TIMING_POLICY=stop ends the session (the episode is saved)")
            self._finish_after_save = True
        if save and self.config.wait_for_save:
            self.phase = Phase.SAVING
            self._publish_status(now)
        else:
            self._ready_for_next(self._clock_ns())

    def _ready_for_next(self, now: int) -> None:
        response_ms = round((now - self._end_trigger_ns) / 1e6, 3)
        self.save_response_ms.append(response_ms)
        self.save_response_count += 1
        self.save_response_max_ms = max(self.save_response_max_ms, response_ms)
        if self._finish_after_save or self.episodes_recorded >= self.config.num_episodes:
            self._finish()
            return
        self.phase = Phase.RESETTING
        self.reset_deadline_ns = now + int(self.config.reset_time_s * 1e9)
        self._publish_status(now)
        if self.config.reset_time_s == 0:
            self._begin_episode(now)

    def _finish(self) -> None:
        """Tell the saver to finish; the session is over once it acknowledges (see `_finished`)."""
        self._finish_seq = self._next_seq()
        self._send(*encode_episode_control("finish", self._finish_seq, self.episode))
        if self.phase != Phase.DONE:
            self.phase = Phase.FINISHING
        self._publish_status(self._clock_ns())

    def _finished(self) -> None:
        """The saver acknowledged `finish`: compare what was recorded with what it committed."""
        self.phase = Phase.DONE
        lost = self.frames_kept - self.saver.frames_committed
        if lost:
            self._error(f"{lost} recorded frames were not committed (recorded {self.frames_kept}, handed over "
                        f"{self.saver.frames_received}, committed {self.saver.frames_committed}); "
                        f"see the saver's errors: {self.saver.errors}")
        elif self.saver.errors:
            self._error(f"the saver reports: {'; '.join(self.saver.errors)}")
        self._log_summary()
        self._publish_status(self._clock_ns())

    def _log_summary(self) -> None:
        self._say(recorder_line(self.status()))

    # ------------------------------------------------------------------ output

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _send(self, value: object, metadata: dict) -> None:
        """Queue one message of the episode stream; it leaves as soon as the saver's credits allow."""
        if self.done:
            return
        nbytes = getattr(value, "nbytes", 0)
        self.outbox.append((metadata["seq"], value, metadata, nbytes))
        self.outbox_bytes += nbytes
        self._pump()

    def _has_credit(self, seq: int, nbytes: int) -> bool:
        within_bytes = not self.in_flight or self.in_flight_bytes + nbytes <= self.config.saver_window_mb * 2**20
        return seq - self.acked_seq <= self.config.saver_window and within_bytes

    def _pump(self) -> None:
        while self.outbox and not self.done and self._has_credit(self.outbox[0][0], self.outbox[0][3]):
            seq, value, metadata, nbytes = self.outbox.popleft()
            self.outbox_bytes -= nbytes
            self.in_flight.append((seq, nbytes, value, metadata))
            self.in_flight_bytes += nbytes
            started = time.perf_counter()
            try:
                self._emit("episode", value, metadata)
            except Exception as exc:  # dora refused the message: nothing further can reach the saver
                self._saver_lost(f"sending message {seq} ({metadata.get('kind')}) to the saver failed: {exc}")
                return
            self.send_max_ms = max(self.send_max_ms, (time.perf_counter() - started) * 1e3)

    def status(self) -> RecorderStatus:
        s = self.saver
        return RecorderStatus(
            phase=self.phase,
            episode=self.episode,
            num_episodes=self.config.num_episodes,
            frame=self.frame_index,
            episode_frames=self.config.episode_frames,
            episodes_recorded=self.episodes_recorded,
            episodes_saved=s.episodes_committed,  # the saver's own figure
            episodes_discarded=self.episodes_discarded,
            slow_episodes=self.slow_episodes,
            frames_sent=self.frames_sent,
            frames_kept=self.frames_kept,
            frames_handed_over=s.frames_received,
            frames_committed=s.frames_committed,
            in_flight=self.seq - self.acked_seq,
            outbox=len(self.outbox),
            stale_skips=self.stale_skips,
            backpressure_skips=self.backpressure_skips,
            rejected=dict(self.problems.counts),
            errors=list(self.errors),
            input_gaps={k: t.gaps for k, t in self.input_seq.items()},
            staleness={k: v.summary() for k, v in self.staleness.items()},
            save_response_ms=list(self.save_response_ms),
            save_response_count=self.save_response_count,
            save_response_max_ms=self.save_response_max_ms,
            send_max_ms=round(self.send_max_ms, 2),
            sample_gap_max_ms=round(self.sample_gap_max_ms, 2),
            episode_seq=self.seq,
        )

    def _publish_status(self, now: int) -> None:
        self._emit("status", encode_status(replace(self.status(), stamp_ns=now)), {})
