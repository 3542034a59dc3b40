"""Recorder logic driven by synthetic events on a fake clock: episodes by time and by keys,
sync pause, staleness, sequence gaps, malformed input, the saver's acknowledgements (credits,
finish hand-over), liveness of the saver and the devices, frame size, timing."""

from collections import deque

import numpy as np
import pyarrow as pa
import pytest

from operating_platform.dataflow.messages import (
    RecorderStatus,
    SaverStatus,
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

    def __init__(self, auto_ack=True, **config):
        config = {"fps": 10, "episode_time_s": 0.5, "reset_time_s": 0.2, "num_episodes": 2, **config}
        self.now = 1_000 * MS
        self.out = []
        self.seqs = {}
        self.said = []
        self.auto_ack = auto_ack
        self.rec = Recorder(RecorderConfig(**config), lambda o, v, m: self.out.append((o, v, m)),
                            clock_ns=lambda: self.now, say=self.said.append)
        self.saver_status()  # the saver is up

    def saver_status(self, handled=0, **fields):
        self.send("saver_status", encode_status(SaverStatus(handled_seq=handled, **fields)))

    def ack(self, upto=None):
        """What a saver that keeps up would say: everything handled, every ended episode committed."""
        stream = self.episode_stream()
        upto = stream[-1].seq if upto is None and stream else (upto or 0)
        seen = [m for m in stream if m.seq <= upto]
        kept = {m.episode_index for m in seen if m.kind == "end"}
        committed = sum(1 for m in seen if m.kind == "frame" and m.episode_index in kept)
        received = sum(1 for m in seen if m.kind == "frame")
        self.saver_status(upto, frames_received=received, frames_committed=committed,
                          episodes_committed=len(kept), done=any(m.kind == "finish" for m in seen))

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
        if self.auto_ack:
            self.ack()

    def key(self, k):
        self.send("key", encode_key(k))
        if self.auto_ack:
            self.ack()

    def episode_stream(self):
        return [decode_episode(v, m) for o, v, m in self.out if o == "episode"]

    def kinds(self):
        return [m.kind for m in self.episode_stream()]

    def statuses(self):
        return [decode_status(v, RecorderStatus) for o, v, m in self.out if o == "status"]


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
    assert status.phase == "done" and status.episodes_recorded == 2 and status.frames_kept == 10
    assert status.episodes_saved == 2 and status.frames_committed == 10 and status.errors == []
    assert len(status.save_response_ms) == 2 and status.staleness["camera_top"]["max_ms"] == 0


def test_the_save_response_history_is_bounded_with_its_summary_kept():
    from operating_platform.dataflow.messages import SAVE_RESPONSE_WINDOW

    episodes = SAVE_RESPONSE_WINDOW + 20
    rig = Rig(episode_time_s=0.1, reset_time_s=0, num_episodes=episodes)
    for _ in range(10 * episodes):
        rig.step()
        if rig.rec.done:
            break
    status = rig.statuses()[-1]
    assert status.phase == "done" and status.episodes_recorded == episodes
    assert len(status.save_response_ms) == SAVE_RESPONSE_WINDOW and status.save_response_count == episodes
    assert status.save_response_max_ms >= max(status.save_response_ms)
    assert f"save response ms max {status.save_response_max_ms:g} over {episodes} episodes" in rig.said[-1]


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
    assert rig.rec.done and rig.rec.episodes_recorded == 2 and rig.rec.episodes_discarded == 1


def test_exit_before_any_frame_just_finishes_and_unknown_keys_are_counted():
    rig = Rig()
    rig.key("x")
    rig.send("key", pa.array([1, 2]))
    rig.key("e")
    assert rig.kinds() == ["finish"] and rig.rec.problems.counts["key"] == 2 and rig.rec.done


def test_sync_mode_pauses_until_the_saver_has_the_episode():
    rig = Rig(wait_for_save=True, reset_time_s=0, num_episodes=2, auto_ack=False)
    for _ in range(6):
        rig.step()
    assert rig.kinds()[-1] == "end" and rig.rec.phase == Phase.SAVING
    end_seq = rig.episode_stream()[-1].seq
    for _ in range(3):
        rig.step()
    assert rig.kinds()[-1] == "end", "no frames while saving"
    rig.saver_status(end_seq - 1)
    assert rig.rec.phase == Phase.SAVING
    rig.now += 400 * MS
    rig.saver_status(end_seq)
    assert rig.rec.phase == Phase.RECORDING and rig.kinds()[-1] == "begin"
    assert rig.rec.save_response_ms[-1] >= 400


def test_sync_mode_exit_waits_for_the_last_save_before_finishing():
    rig = Rig(wait_for_save=True, episode_time_s=100, auto_ack=False)
    rig.step()
    rig.step()
    rig.key("e")
    assert rig.kinds()[-1] == "end" and not rig.rec.done
    rig.saver_status(rig.episode_stream()[-1].seq)
    assert rig.kinds()[-1] == "finish" and rig.rec.phase == Phase.FINISHING
    rig.ack()
    assert rig.rec.done and rig.rec.errors == []


def test_a_saver_that_cannot_save_stops_the_recording():
    rig = Rig(episode_time_s=100)
    rig.step()
    rig.saver_status(fatal="cannot open the dataset: read-only file system")
    assert rig.rec.phase == Phase.FINISHING and rig.kinds()[-1] == "finish"
    rig.ack()
    assert rig.rec.done and "read-only file system" in rig.rec.errors[0]


def test_stale_inputs_are_skipped_and_reported_and_gaps_counted():
    rig = Rig(max_staleness_s=0.15, episode_time_s=100)
    rig.step()
    rig.step()
    rig.step(ms=300, feed=False)  # nothing new for 300 ms: the sample would pair old data
    assert rig.rec.stale_skips == 1 and rig.rec.frame_index == 2
    rig.seqs["l"] += 3  # three leader messages lost upstream
    rig.step()
    status = rig.rec.status()
    assert status.input_gaps["leader"] == 3 and status.input_gaps["follower"] == 0
    assert status.staleness["leader"]["max_ms"] == 0


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
    assert counts["camera_top"] == 3 and counts["leader"] == 1 and counts["saver_status"] == 1
    assert counts["unknown input"] == 1
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


# ---------------------------------------------------------------- the acknowledged hand-over


def test_the_recorder_is_done_only_when_the_saver_acknowledged_finish():
    rig = Rig(auto_ack=False, episode_time_s=0.3, num_episodes=1)
    for _ in range(6):
        rig.step()
    assert rig.kinds()[-2:] == ["end", "finish"] and rig.rec.phase == Phase.FINISHING
    rig.ack(rig.episode_stream()[-2].seq)  # everything but `finish`
    assert not rig.rec.done
    rig.ack()
    assert rig.rec.done and rig.rec.errors == []
    assert "frames recorded 3, handed over 3, committed 3" in rig.said[-1]


def test_committed_less_than_recorded_is_an_error_with_the_counts():
    rig = Rig(auto_ack=False, episode_time_s=0.3, num_episodes=1)
    for _ in range(6):
        rig.step()
    rig.saver_status(rig.rec.seq, frames_received=3, frames_committed=2, done=True, errors=["1 frame lost"])
    assert rig.rec.done
    assert rig.rec.errors == ["1 recorded frames were not committed (recorded 3, handed over 3, committed 2); "
                              "see the saver's errors: ['1 frame lost']"]


def test_at_most_a_window_of_messages_is_in_flight_and_the_rest_waits_in_the_outbox():
    rig = Rig(auto_ack=False, episode_time_s=100, saver_window=4)
    for _ in range(10):
        rig.step()
    assert [m.seq for m in rig.episode_stream()] == [1, 2, 3, 4], "begin + 3 frames, then no credits"
    assert rig.rec.frame_index == 10 and len(rig.rec.outbox) == 7
    rig.ack(2)
    assert [m.seq for m in rig.episode_stream()][-1] == 6
    rig.ack()
    rig.ack()
    assert len(rig.rec.outbox) == 0 and len(rig.episode_stream()) == 11


def test_a_full_outbox_pauses_sampling_with_a_warning_and_the_episode_is_named_slow():
    rig = Rig(auto_ack=False, episode_time_s=100, saver_window=2, outbox_mb=1)
    for _ in range(5):
        rig.step()
    rig.rec.config.outbox_mb = 0  # the outbox is "full" from now on
    for _ in range(3):
        rig.step()
    assert rig.rec.backpressure_skips == 3 and rig.rec.problems.counts["saver behind"] == 3
    rig.rec.config.outbox_mb = 1
    rig.ack()
    rig.step()
    rig.key("n")
    assert rig.rec.slow_episodes == 1, "a 400 ms gap at 10 fps"


# ---------------------------------------------------------------- liveness


def test_a_dead_saver_stops_recording_at_once_with_one_error():
    rig = Rig(episode_time_s=100)
    for _ in range(3):
        rig.step()
    sent = len(rig.out)
    rig.rec.on_closed("saver_status")
    assert rig.rec.done and len(rig.rec.errors) == 1 and "the saver exited" in rig.rec.errors[0]
    assert "3 frames recorded, 3 taken by the saver, 0 committed" in rig.rec.errors[0]
    rig.step()
    assert [o for o, _, _ in rig.out[sent:]] == ["status"], "nothing more is sent to a saver that is gone"


@pytest.mark.parametrize("how", ["exited", "hung"])
def test_a_lost_saver_gets_what_it_had_not_acknowledged_in_the_recorders_note(tmp_path, how):
    from operating_platform.dataflow.stop_note import take_stop_note

    rig = Rig(episode_time_s=100, auto_ack=False, saver_window=3, saver_timeout_s=2)
    for _ in range(5):
        rig.step()
    rig.saver_status(2, root=str(tmp_path), frames_received=1)  # begin, frame 0 taken; 1-2 in flight, 3-4 in the outbox
    if how == "exited":
        rig.rec.on_closed("saver_status")
    else:
        for _ in range(22):
            rig.step()
    assert rig.rec.done and len(rig.rec.errors) == 1
    note = take_stop_note(tmp_path, timeout_s=0)
    frames = [m["frame_index"] for _, m in note if m["kind"] == "frame"]
    assert frames == list(range(1, rig.rec.frames_kept)), "every frame recorded and not acknowledged is in the note"
    assert (f"{rig.rec.frames_kept} frames recorded, 1 taken by the saver, 0 committed; what it took stays in its spool, "
            f"the {len(frames)} frames it had not acknowledged are kept in the recorder's note {tmp_path / '.spool/recorder_stop'}; "
            f"commit them with: python scripts/recover_episodes.py {tmp_path} --include-partial") in rig.rec.errors[0]
    assert rig.rec.outbox == deque() and rig.rec.in_flight == deque()


def test_a_lost_saver_whose_note_cannot_be_written_names_the_frames_lost(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    rig = Rig(episode_time_s=100, auto_ack=False, saver_window=3)
    for _ in range(5):
        rig.step()
    rig.saver_status(2, root=str(tmp_path / "file"), frames_received=1)
    rig.rec.on_closed("saver_status")
    [error] = rig.rec.errors
    assert "5 frames recorded, 1 taken by the saver" in error
    assert "the 4 frames it had not acknowledged are lost (their note could not be written: " in error
    assert f"python scripts/recover_episodes.py {tmp_path / 'file'} --include-partial" in error


def test_a_silent_saver_is_hung_after_saver_timeout():
    rig = Rig(auto_ack=False, episode_time_s=100, saver_timeout_s=2)
    for _ in range(19):
        rig.step()
    assert not rig.rec.done
    for _ in range(3):
        rig.step()
    assert rig.rec.done and "the saver has sent nothing for 2 s (hung)" in rig.rec.errors[0]


@pytest.mark.parametrize("how", ["closed", "silent"])
def test_a_camera_that_closes_or_goes_silent_ends_the_session_and_keeps_the_frames(how):
    rig = Rig(episode_time_s=100, input_timeout_s=1, max_staleness_s=0.15)
    for _ in range(4):
        rig.step()
    if how == "closed":
        rig.rec.on_closed("camera_top")
    else:
        for _ in range(12):  # the top camera sends nothing, the others go on
            rig.now += 100 * MS
            rig.send("camera_wrist", *encode_image(np.full((4, 6, 3), 7, np.uint8), rig._seq("wrist"), rig.now))
            rig.send("tick", pa.array([0]), {})
            rig.ack()
    rig.ack()
    assert rig.rec.done and len(rig.rec.errors) == 1 and "camera_top" in rig.rec.errors[0]
    assert rig.kinds()[-2:] == ["end", "finish"] and rig.rec.frames_kept >= 4
    assert rig.rec.status().frames_committed == rig.rec.frames_kept


def test_inputs_that_never_arrive_end_the_session_after_start_timeout():
    rig = Rig(start_timeout_s=1)
    for _ in range(11):
        rig.step(feed=False)
    assert rig.rec.done and "leader, follower, camera_top, camera_wrist sent nothing fresh within 1 s" in rig.rec.errors[0]


def test_recording_waits_for_fresh_inputs_and_a_device_slow_to_start_is_not_dead():
    rig = Rig(input_timeout_s=1, max_staleness_s=0.15)
    rig.feed_inputs()
    rig.now += 200 * MS
    for _ in range(20):  # 2 s: every input spoke once, then the cameras went quiet (still starting up)
        rig.now += 100 * MS
        rig.send("follower", *encode_joint(np.zeros(6), SO101_JOINT_NAMES, rig._seq("f"), rig.now))
        rig.send("leader", *encode_joint(np.zeros(6), SO101_JOINT_NAMES, rig._seq("l"), rig.now))
        rig.send("tick", pa.array([0]), {})
    assert rig.rec.phase == Phase.WAITING_FOR_INPUTS and rig.kinds() == [] and not rig.rec.errors
    rig.step()
    assert rig.rec.phase == Phase.RECORDING and not rig.rec.errors


def test_dora_stop_hands_what_the_saver_has_not_acknowledged_over_on_disk(tmp_path):
    from operating_platform.dataflow.stop_note import take_stop_note

    rig = Rig(episode_time_s=100, auto_ack=False, saver_window=3)
    for _ in range(5):
        rig.step()
    rig.saver_status(2, root=str(tmp_path))  # begin and frame 0 taken; frames 1-2 in flight, 3-4 in the outbox
    sent = len(rig.episode_stream())
    rig.rec.on_dora_stop()
    assert rig.rec.done and rig.rec.errors == [] and len(rig.episode_stream()) == sent, "nothing sent after STOP"
    assert rig.rec.frames_kept == 5, "the episode in progress counts as recorded: the saver saves it on STOP"
    note = take_stop_note(tmp_path, timeout_s=1)
    assert [m["seq"] for _, m in note] == [1, 3, 4, 5, 6], "the episode's begin (its task) and what was not acknowledged"
    assert [m.get("frame_index") for _, m in note] == [None, 1, 2, 3, 4] and note[0][1]["task"] == rig.rec.config.task
    assert decode_episode(*note[1]).images["top"].shape == (4, 6, 3)


# ---------------------------------------------------------------- frame size, timing, stream contract


def test_a_frame_over_doras_message_limit_is_refused_before_recording():
    rig = Rig(cameras=["top"])
    big = np.zeros((3072 * 2, 4096, 3), np.uint8)  # 75 MB: two 4096x3072 cameras' worth
    rig.send("camera_top", *encode_image(big, 1, rig.now))
    rig.send("follower", *encode_joint(np.zeros(6), SO101_JOINT_NAMES, 1, rig.now))
    rig.send("leader", *encode_joint(np.zeros(6), SO101_JOINT_NAMES, 1, rig.now))
    rig.send("tick", pa.array([0]), {})
    rig.ack()
    assert rig.kinds() == ["finish"] and rig.rec.done
    assert rig.rec.errors == ["cannot record camera top 4096x6144: one frame is 75497520 bytes, over dora's "
                              "67108864-byte message limit; lower the resolution or record fewer cameras"]


@pytest.mark.parametrize("policy", ["warn", "discard", "stop"])
def test_an_episode_slower_than_real_time_is_named_and_handled_by_the_timing_policy(policy):
    rig = Rig(episode_time_s=0.5, num_episodes=2, timing_policy=policy)
    for _ in range(3):
        rig.step()
    rig.step(ms=350)  # a stall of 3.5 periods
    for _ in range(2):
        rig.step()
    end = [m for m in rig.episode_stream() if m.kind in ("end", "discard")][0]
    assert rig.rec.slow_episodes == 1
    if policy == "warn":
        assert end.kind == "end" and end.timing["slow"] and end.timing["sample_gap_max_ms"] == 350
        assert not rig.rec.errors
    elif policy == "discard":
        assert end.kind == "discard" and rig.rec.episode == 0, "re-recorded under the same number"
    else:
        assert end.kind == "end" and rig.rec.done and "TIMING_POLICY=stop" in rig.rec.errors[0]


def test_a_real_time_episode_is_not_slow():
    rig = Rig(episode_time_s=0.5, num_episodes=1)
    for _ in range(8):
        rig.step()
    end = [m for m in rig.episode_stream() if m.kind == "end"][0]
    assert end.timing == {"frames": 5, "fps": 10, "duration_s": 0.5, "sample_gap_max_ms": 100.0, "slow": False}


def test_duplicated_or_late_input_messages_are_rejected_as_out_of_order():
    rig = Rig(episode_time_s=100)
    rig.step()
    rig.send("leader", *encode_joint(np.full(6, 9.0), SO101_JOINT_NAMES, rig.seqs["l"], rig.now))  # a duplicate
    rig.send("leader", *encode_joint(np.full(6, 9.0), SO101_JOINT_NAMES, rig.seqs["l"] - 1, rig.now))  # a late one
    assert rig.rec.problems.counts["out of order"] == 2
    assert np.all(rig.rec.latest["leader"].positions == 2.0), "the newest message stays the sampled one"


def test_the_bytes_in_flight_are_bounded_too():
    rig = Rig(auto_ack=False, episode_time_s=100, saver_window=100, saver_window_mb=1)
    for _ in range(3):
        rig.step()
    frame_bytes = rig.rec.layout.nbytes
    rig.rec.config.saver_window_mb = 0  # only one message may be in flight now
    for _ in range(3):
        rig.step()
    assert rig.rec.in_flight_bytes <= 4 * frame_bytes and len(rig.rec.outbox) == 3
    rig.ack()
    assert len(rig.rec.outbox) == 2 and len(rig.rec.in_flight) == 1, "acks release credit one message at a time"
