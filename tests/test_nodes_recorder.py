"""Recorder logic driven by synthetic events on a fake clock: episodes by time and by keys,
sync pause, staleness, sequence gaps, malformed input."""

import numpy as np
import pyarrow as pa
import pytest

from operating_platform.dataflow.messages import (
    decode_episode,
    decode_status,
    encode_image,
    encode_joint,
    encode_key,
    encode_status,
)
from operating_platform.dataflow.recorder import Phase, Recorder, RecorderConfig
from operating_platform.hardware.base import SO101_JOINT_NAMES

MS = 1_000_000


class Rig:
    """A recorder with two 4x6 cameras and both arms, on a clock the test moves."""

    def __init__(self, **config):
        config = {"fps": 10, "episode_time_s": 0.5, "reset_time_s": 0.2, "num_episodes": 2, **config}
        self.now = 1_000 * MS
        self.out = []
        self.seqs = {}
        self.rec = Recorder(RecorderConfig(**config), lambda o, v, m: self.out.append((o, v, m)),
                            clock_ns=lambda: self.now)

    def feed_inputs(self, state=1.0, action=2.0):
        for cam in self.rec.config.cameras:
            self.send(f"camera_{cam}", *encode_image(np.full((4, 6, 3), 7, np.uint8), self._seq(cam), self.now))
        self.send("follower", *encode_joint(np.full(6, state), SO101_JOINT_NAMES, self._seq("f"), self.now))
        self.send("leader", *encode_joint(np.full(6, action), SO101_JOINT_NAMES, self._seq("l"), self.now))

    def _seq(self, key):
        self.seqs[key] = self.seqs.get(key, 0) + 1
        return self.seqs[key]

    def send(self, input_id, value, metadata=None):
        self.rec.on_input(input_id, value, metadata)

    def step(self, ms=100, feed=True):
        """Advance the clock one sample period, deliver fresh inputs, then a tick."""
        self.now += ms * MS
        if feed:
            self.feed_inputs()
        self.send("tick", pa.array([0]), {})

    def key(self, k):
        self.send("key", encode_key(k))

    def episode_stream(self):
        return [decode_episode(v, m) for o, v, m in self.out if o == "episode"]

    def kinds(self):
        return [m.kind for m in self.episode_stream()]

    def statuses(self):
        return [decode_status(v) for o, v, m in self.out if o == "status"]


def test_waits_for_every_input_then_records_episodes_by_time_and_finishes():
    rig = Rig()
    rig.send("tick", pa.array([0]), {})
    assert rig.rec.phase == Phase.WAITING_FOR_INPUTS and rig.kinds() == []
    for _ in range(30):
        rig.step()
        if rig.rec.done:
            break
    kinds = rig.kinds()
    assert kinds == ["begin"] + ["frame"] * 5 + ["end"] + ["begin"] + ["frame"] * 5 + ["end", "finish"]
    stream = rig.episode_stream()
    assert [m.seq for m in stream] == list(range(1, len(stream) + 1))
    frames = [m for m in stream if m.kind == "frame"]
    assert [m.frame_index for m in frames] == [0, 1, 2, 3, 4] * 2
    assert [m.episode_index for m in frames] == [0] * 5 + [1] * 5
    assert np.all(frames[0].state == 1.0) and np.all(frames[0].action == 2.0), "state = follower, action = leader"
    assert frames[0].images["top"].shape == (4, 6, 3)
    status = rig.statuses()[-1]
    assert status["phase"] == "done" and status["episodes_saved"] == 2 and status["frames_kept"] == 10
    assert len(status["save_response_ms"]) == 2 and status["staleness"]["camera_top"]["max_ms"] == 0


def test_keys_n_r_p_e():
    rig = Rig(episode_time_s=100, reset_time_s=100, num_episodes=5)
    for _ in range(3):
        rig.step()
    rig.key("n")  # save episode 0 after 3 frames
    assert rig.rec.phase == Phase.RESETTING
    rig.step()
    assert rig.rec.phase == Phase.RESETTING, "reset lasts reset_time_s"
    rig.key("p")  # proceed: episode 1 begins
    rig.step()
    rig.step()
    rig.key("r")  # discard it: same episode number is recorded again
    rig.key("n")  # in reset, n also proceeds
    rig.step()
    rig.key("e")
    stream = rig.episode_stream()
    controls = [(m.kind, m.episode_index) for m in stream if m.kind != "frame"]
    assert controls == [("begin", 0), ("end", 0), ("begin", 1), ("discard", 1), ("begin", 1), ("end", 1), ("finish", 2)]
    assert rig.rec.done and rig.rec.episodes_saved == 2 and rig.rec.episodes_discarded == 1


def test_exit_before_any_frame_just_finishes_and_unknown_keys_are_counted():
    rig = Rig()
    rig.key("x")
    rig.send("key", pa.array([1, 2]))
    rig.key("e")
    assert rig.kinds() == ["finish"] and rig.rec.problems.counts["key"] == 2


def test_sync_mode_pauses_until_the_saver_has_the_episode():
    rig = Rig(wait_for_save=True, reset_time_s=0, num_episodes=2)
    for _ in range(6):
        rig.step()
    assert rig.kinds()[-1] == "end" and rig.rec.phase == Phase.SAVING
    end_seq = rig.episode_stream()[-1].seq
    for _ in range(3):
        rig.step()
    assert rig.kinds()[-1] == "end", "no frames while saving"
    rig.send("saver_status", encode_status({"handled_seq": end_seq - 1}))
    assert rig.rec.phase == Phase.SAVING
    rig.now += 400 * MS
    rig.send("saver_status", encode_status({"handled_seq": end_seq}))
    assert rig.rec.phase == Phase.RECORDING and rig.kinds()[-1] == "begin"
    assert rig.rec.save_response_ms[-1] >= 400


def test_sync_mode_exit_waits_for_the_last_save_before_finishing():
    rig = Rig(wait_for_save=True, episode_time_s=100)
    rig.step()
    rig.step()
    rig.key("e")
    assert rig.kinds()[-1] == "end" and not rig.rec.done
    rig.send("saver_status", encode_status({"handled_seq": rig.episode_stream()[-1].seq}))
    assert rig.kinds()[-1] == "finish" and rig.rec.done


def test_a_saver_that_cannot_save_stops_the_recording():
    rig = Rig(episode_time_s=100)
    rig.step()
    rig.send("saver_status", encode_status({"fatal": "cannot open the dataset: read-only file system"}))
    assert rig.rec.done and rig.kinds()[-1] == "finish"


def test_stale_inputs_are_skipped_and_reported_and_gaps_counted():
    rig = Rig(max_staleness_s=0.15, episode_time_s=100)
    rig.step()
    rig.step()
    rig.step(ms=300, feed=False)  # nothing new for 300 ms: the sample would pair old data
    assert rig.rec.stale_skips == 1 and rig.rec.frame_index == 2
    rig.seqs["l"] += 3  # three leader messages lost upstream
    rig.step()
    status = rig.rec.status()
    assert status["input_gaps"]["leader"] == 3 and status["input_gaps"]["follower"] == 0
    assert status["staleness"]["leader"]["max_ms"] == 0


def test_malformed_inputs_are_rejected_counted_and_harmless():
    rig = Rig(episode_time_s=100)
    rig.step()
    rig.send("camera_top", pa.array(np.zeros(10, np.uint8)), {"encoding": "rgb8", "width": 6, "height": 4, "seq": 9, "stamp_ns": 1})
    rig.send("camera_top", pa.array(np.zeros(72, np.float32)), {"encoding": "rgb8", "width": 6, "height": 4, "seq": 9, "stamp_ns": 1})
    rig.send("camera_top", *encode_image(np.zeros((8, 6, 3), np.uint8), 99, rig.now))  # resolution changed
    rig.send("leader", pa.array(np.zeros(6, np.float32)), {"seq": 1})
    rig.send("saver_status", pa.array(["nope"]))
    rig.send("mystery", pa.array([1]))
    rig.step()
    counts = rig.rec.problems.counts
    assert counts["camera_top"] == 3 and counts["leader"] == 1 and counts["saver_status"] == 1 and counts["mystery"] == 1
    assert rig.rec.frame_index == 2, "recording went on"


def test_timer_slightly_faster_than_fps_keeps_the_rate():
    rig = Rig(fps=30, episode_time_s=100)
    for _ in range(300):
        rig.step(ms=33)  # a 33 ms timer for 30 fps
    assert abs(rig.rec.frame_index - 300 * 33 / (1000 / 30)) <= 2


def test_ticks_queued_during_a_stall_do_not_become_duplicate_frames():
    rig = Rig(fps=30, episode_time_s=100)
    rig.step(ms=33)
    rig.now += 300 * MS  # the recorder was held up; 9 ticks were queued meanwhile
    rig.feed_inputs()
    for _ in range(9):
        rig.send("tick", pa.array([0]), {})
    assert rig.rec.frame_index == 2
    for _ in range(30):
        rig.step(ms=33)
    assert rig.rec.frame_index == 32


def test_config_from_env_and_validation():
    cfg = RecorderConfig.from_env({"FPS": "15", "NUM_EPISODES": "2", "RECORD_CAMERAS": "a,b,c", "USE_ASYNC_SAVE": "false"})
    assert cfg.fps == 15 and cfg.cameras == ["a", "b", "c"] and cfg.wait_for_save and cfg.episode_frames == 60
    with pytest.raises(ValueError, match="FPS='x'"):
        RecorderConfig.from_env({"FPS": "x"})
    with pytest.raises(ValueError, match="num_episodes=0"):
        RecorderConfig(num_episodes=0)
