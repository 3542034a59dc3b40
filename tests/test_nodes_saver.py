"""Saver logic on a real dataset writer (tmp dir): episodes committed, discards leave no trace,
malformed or out-of-order messages rejected and counted, gaps reported, sync == async format."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operating_platform.dataflow.messages import (
    EpisodeLayout,
    SaverStatus,
    decode_status,
    encode_episode_control,
    encode_episode_frame,
)
from operating_platform.dataflow.saver import Saver, SaverConfig
from operating_platform.dataflow.stop_note import write_stop_note
from operating_platform.hardware.base import SO101_JOINT_NAMES

from dataset_factory import committed_episodes, committed_table

LAYOUT = EpisodeLayout(list(SO101_JOINT_NAMES), {"top": (64, 96)})


class Stream:
    """Feeds a Saver the way the recorder would, numbering every message."""

    def __init__(self, root, use_async=True, resume=True, layout=LAYOUT, **config):
        self.config = SaverConfig(root=str(root), use_async_save=use_async, resume=resume, vcodec="libx264", **config)
        self.status_out, self.said = [], []
        self.saver = Saver(self.config.open_dataset, lambda o, v, m: self.status_out.append(decode_status(v, SaverStatus)),
                           say=self.said.append)
        self.seq = 0
        self.layout = layout

    def _next(self):
        self.seq += 1
        return self.seq

    def control(self, kind, episode):
        self.saver.on_episode(*encode_episode_control(kind, self._next(), episode, "stack blocks", self.layout))

    def frames(self, episode, n, start=0):
        rng = np.random.default_rng(episode)
        for i in range(start, start + n):
            images = {c: rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for c, (h, w) in self.layout.cameras.items()}
            self.saver.on_episode(*encode_episode_frame(self._next(), episode, i, self.layout,
                                                        np.full(6, i, np.float32), np.full(6, -i, np.float32), images,
                                                        time.time_ns()))

    def captured(self, send):
        """The messages `send` makes, kept back instead of delivered (dropped, or not yet arrived)."""
        sent = []
        self.saver.on_episode = lambda v, m: sent.append((v, m))
        try:
            send()
        finally:
            del self.saver.on_episode
        return sent

    def deliver(self, messages):
        for value, metadata in messages:
            self.saver.on_episode(value, metadata)

    def episode(self, episode, n, kind="end"):
        self.control("begin", episode)
        self.frames(episode, n)
        self.control(kind, episode)


def test_episodes_are_committed_and_status_reports_everything(tmp_path):
    s = Stream(tmp_path / "ds")
    s.episode(0, 5)
    s.episode(1, 4)
    s.control("finish", 2)
    status = s.saver.status()
    assert s.saver.done and status.done
    assert (status.queued, status.completed, status.failed) == (2, 2, 0)
    assert status.frames_received == 9 and status.frames_committed == 9 and status.sequence_gaps == 0
    assert any("Save stats: queued=2 completed=2 failed=0" in line for line in s.said)
    assert json.loads((tmp_path / "ds/meta/info.json").read_text())["codebase_version"] == "v3.0"  # the default
    assert [e["length"] for e in committed_episodes(tmp_path / "ds")] == [5, 4]
    table = committed_table(tmp_path / "ds", 1)
    assert table.column("observation.state").to_pylist()[3] == [3.0] * 6
    assert table.column("action").to_pylist()[3] == [-3.0] * 6
    assert s.status_out[-1].done and s.status_out[-1].completed == 2


def test_discarded_episode_leaves_no_trace(tmp_path):
    s = Stream(tmp_path / "ds")
    s.episode(0, 3, kind="discard")
    s.episode(0, 4)
    s.control("finish", 1)
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    assert info["total_episodes"] == 1 and info["total_frames"] == 4
    working = [p for p in (tmp_path / "ds").rglob("*") if p.is_file() and {".spool", ".staging"} & set(p.parts)]
    assert working == []
    assert s.saver.status().episodes_discarded == 1


def test_gaps_and_malformed_messages_are_counted_not_fatal(tmp_path):
    s = Stream(tmp_path / "ds")
    s.control("begin", 0)
    s.frames(0, 2)
    s.seq += 3  # three messages lost in transit
    s.frames(0, 1, start=5)
    s.saver.on_episode(pa.array(np.zeros(5, np.uint8)), {"kind": "frame", "seq": s._next(), "episode_index": 0})
    s.saver.on_episode(pa.array(np.zeros(5, np.float32)), None)
    value, meta = encode_episode_frame(s._next(), 7, 0, LAYOUT, np.zeros(6), np.zeros(6), {"top": np.zeros((64, 96, 3), np.uint8)}, 0)
    s.saver.on_episode(value, meta)  # a frame of an episode that never began
    s.saver.on_episode(*encode_episode_control("end", s._next(), 9))  # end of an unknown episode
    s.control("end", 0)
    s.control("finish", 1)
    assert not s.saver.done, "what follows a gap waits for the missing messages..."
    s.saver.on_tick()
    s.saver.on_tick()  # ...until a tick later they are given up
    status = s.saver.status()
    assert s.saver.done and status.sequence_gaps == 3 + 1, "the 3 lost + the undecodable frame whose seq went unseen"
    assert status.rejected == {"malformed": 2, "frame": 1, "end": 1}
    assert status.completed == 1 and status.frames_committed == 3
    assert s.saver.errors == ["4 messages of the recorder's stream never arrived (sequence gaps)"]


def test_sync_and_async_write_the_same_format(tmp_path):
    for mode in ("sync", "async"):
        s = Stream(tmp_path / mode, use_async=(mode == "async"))
        s.episode(0, 3)
        s.control("finish", 1)
        assert s.saver.status().completed == 1
    infos = [json.loads((tmp_path / m / "meta/info.json").read_text()) for m in ("sync", "async")]
    assert infos[0] == infos[1]
    schemas = [pq.read_schema(tmp_path / m / "data/chunk-000/file-000.parquet") for m in ("sync", "async")]
    assert schemas[0].equals(schemas[1])
    files = [sorted(str(p.relative_to(tmp_path / m)) for p in (tmp_path / m).rglob("*") if p.is_file()) for m in ("sync", "async")]
    assert files[0] == files[1]


def test_existing_dataset_is_resumed_or_refused_with_the_reason(tmp_path):
    s = Stream(tmp_path / "ds")
    s.episode(0, 2)
    s.control("finish", 1)
    resumed = Stream(tmp_path / "ds")
    resumed.episode(0, 2)
    resumed.control("finish", 1)
    assert json.loads((tmp_path / "ds/meta/info.json").read_text())["total_episodes"] == 2
    refused = Stream(tmp_path / "ds", resume=False)
    refused.episode(0, 2)
    status = refused.saver.status()
    assert "already holds a dataset" in status.fatal and status.frames_received == 0
    other = Stream(tmp_path / "ds", layout=EpisodeLayout(list(SO101_JOINT_NAMES), {"top": (32, 32)}))
    other.episode(0, 1)
    assert "cannot open the dataset" in other.saver.status().fatal


def test_config_from_env():
    cfg = SaverConfig.from_env({"REPO_ID": "x", "USE_ASYNC_SAVE": "false", "ASYNC_SAVE_QUEUE_SIZE": "20"})
    assert cfg.dataset_root == Path("data/x").resolve() and not cfg.use_async_save and cfg.async_save_queue_size == 20
    with pytest.raises(ValueError, match="USE_ASYNC_SAVE=.maybe. is not a valid boolean"):
        SaverConfig.from_env({"USE_ASYNC_SAVE": "maybe"})


def test_duplicates_are_dropped_and_swapped_frames_put_back_in_order(tmp_path):
    s = Stream(tmp_path / "ds")
    s.control("begin", 0)
    sent = []
    s.saver.on_episode = lambda v, m: sent.append((v, m))  # capture, then deliver in a chosen order
    s.frames(0, 6)
    del s.saver.on_episode
    order = [0, 1, 1, 3, 2, 4, 5, 5]  # frame 1 twice, frames 2 and 3 swapped, frame 5 twice
    for i in order:
        s.saver.on_episode(*sent[i])
    s.control("end", 0)
    s.control("finish", 1)
    status = s.saver.status()
    assert status.frames_committed == 6 and status.duplicates == 2 and status.reordered == 1
    assert status.sequence_gaps == 0 and status.rejected == {"duplicate": 2} and s.saver.errors == []
    table = committed_table(tmp_path / "ds", 0)
    assert [row[0] for row in table.column("observation.state").to_pylist()] == [0, 1, 2, 3, 4, 5]


def test_a_frame_index_already_stored_is_rejected_and_unknown_inputs_are_counted(tmp_path):
    s = Stream(tmp_path / "ds")
    s.control("begin", 0)
    s.frames(0, 2)
    value, meta = encode_episode_frame(s._next(), 0, 1, LAYOUT, np.zeros(6), np.zeros(6), {"top": np.zeros((64, 96, 3), np.uint8)}, 0)
    s.saver.on_episode(value, meta)  # a new message repeating frame 1
    s.saver.on_input("mystery", pa.array([1]), {})
    s.control("end", 0)
    s.control("finish", 1)
    status = s.saver.status()
    assert status.rejected == {"duplicate frame": 1, "unknown input": 1} and status.frames_committed == 2


def test_the_status_acknowledges_every_few_frames_and_after_every_control_message(tmp_path):
    s = Stream(tmp_path / "ds")
    s.control("begin", 0)
    s.frames(0, 9)
    acks = [st.handled_seq for st in s.status_out]
    assert acks[0] == 1 and acks[-1] >= 10 - 4 and all(b - a <= 4 for a, b in zip(acks, acks[1:]))
    s.control("end", 0)
    assert s.status_out[-1].handled_seq == 11


def test_stop_mid_episode_saves_the_episode_in_progress(tmp_path):
    s = Stream(tmp_path / "ds")
    s.episode(0, 3)
    s.control("begin", 1)
    s.frames(1, 4)
    write_stop_note(tmp_path / "ds", [])  # the recorder: nothing unacknowledged
    s.saver.finish("stop")
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    assert info["total_episodes"] == 2 and info["total_frames"] == 7 and s.saver.errors == []
    assert s.saver.should_exit and not (tmp_path / "ds/.spool").exists()


def test_at_stop_the_frames_dora_dropped_come_from_the_recorders_note(tmp_path):
    s = Stream(tmp_path / "ds")
    s.control("begin", 0)
    sent = []
    s.saver.on_episode = lambda v, m: sent.append((v, m))
    s.frames(0, 6)
    del s.saver.on_episode
    for value, metadata in sent[:4]:  # frames 4 and 5 were dropped by dora at STOP
        s.saver.on_episode(value, metadata)
    write_stop_note(tmp_path / "ds", sent[2:])  # the recorder had acknowledgements up to frame 1
    s.saver.finish("stop")
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    assert info["total_frames"] == 6 and s.saver.errors == [] and s.saver.status().frames_from_stop_note == 2
    assert any("stop: 2 frames the recorder could not hand over taken from its note" in line for line in s.said)
    table = committed_table(tmp_path / "ds", 0)
    assert [row[0] for row in table.column("observation.state").to_pylist()] == [0, 1, 2, 3, 4, 5]


def test_at_stop_without_the_recorders_note_the_outcome_is_unconfirmed(tmp_path, monkeypatch):
    monkeypatch.setattr("operating_platform.dataflow.saver.STOP_NOTE_WAIT_S", 0.2)
    s = Stream(tmp_path / "ds")
    s.control("begin", 0)
    s.frames(0, 2)
    s.saver.finish("stop")
    assert json.loads((tmp_path / "ds/meta/info.json").read_text())["total_frames"] == 2
    assert s.saver.errors == ["the recorder left no note of its unacknowledged messages within 0.2 s of STOP: "
                              "whether every recorded frame arrived cannot be confirmed"]


def test_the_recorder_vanishing_mid_episode_is_an_error_naming_the_partial_and_its_recovery(tmp_path):
    s = Stream(tmp_path / "ds")
    s.episode(0, 3)
    s.control("begin", 1)
    s.frames(1, 4)
    s.saver.on_closed("episode")
    assert s.saver.done and s.saver.should_exit
    [error] = s.saver.errors
    assert "in the middle of episode 1 in progress (4 frames)" in error
    assert f"python scripts/recover_episodes.py {tmp_path / 'ds'} --include-partial" in error
    assert json.loads((tmp_path / "ds/meta/info.json").read_text())["total_frames"] == 3
    assert s.saver.status().frames_partial == 4


def test_after_finish_the_saver_waits_for_the_recorder_to_leave(tmp_path):
    s = Stream(tmp_path / "ds")
    s.episode(0, 2)
    s.control("finish", 1)
    assert s.saver.done and not s.saver.should_exit, "the recorder may still be taking the ack"
    s.saver.on_closed("episode")
    assert s.saver.should_exit and s.saver.errors == []


def test_each_saved_episode_timing_is_kept_beside_the_dataset(tmp_path):
    from operating_platform.dataflow.timing import EpisodeTiming, read_timing

    s = Stream(tmp_path / "ds")
    s.control("begin", 0)
    s.frames(0, 3)
    slow = EpisodeTiming(frames=3, fps=30, duration_s=2.5, sample_gap_max_ms=2000.0)
    s.saver.on_episode(*encode_episode_control("end", s._next(), 0, timing=slow.to_metadata()))
    s.control("finish", 1)
    assert read_timing(tmp_path / "ds") == {0: {"episode_index": 0, **slow.to_metadata()}}
    assert read_timing(tmp_path / "ds")[0]["slow"]


REPO = Path(__file__).resolve().parents[1]


def recover(root, how="--include-partial"):
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "recover_episodes.py"), str(root), how,
                          "--vcodec", "libx264"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def states(root, episode):
    return [row[0] for row in committed_table(root, episode).column("observation.state").to_pylist()]


def test_a_hung_saver_that_wakes_to_find_the_recorder_gone_takes_its_note_into_the_partial_episode(tmp_path):
    root = tmp_path / "ds"
    s = Stream(root)
    s.control("begin", 0)
    sent = s.captured(lambda: s.frames(0, 6))
    s.deliver(sent[:3])  # then it hung; the recorder had its acknowledgement up to frame 1, and gave up on it
    write_stop_note(root, sent[2:])
    s.saver.on_closed("episode")
    [error] = s.saver.errors
    assert "in the middle of episode 0 in progress (6 frames)" in error
    assert f"python scripts/recover_episodes.py {root} --include-partial" in error
    assert s.saver.status().frames_from_stop_note == 3 and s.saver.status().frames_partial == 6
    assert any("closed: 3 frames the recorder could not hand over taken from its note" in line for line in s.said)
    assert not (root / ".spool/recorder_stop").exists()
    recover(root)
    assert states(root, 0) == [0, 1, 2, 3, 4, 5]


def test_a_recorder_vanishing_without_a_note_leaves_no_error_about_the_note(tmp_path):
    s = Stream(tmp_path / "ds")
    s.control("begin", 0)
    s.frames(0, 2)
    s.saver.on_closed("episode")
    [error] = s.saver.errors
    assert "in the middle of episode 0 in progress (2 frames)" in error


def die(s):
    """What a killed saver leaves on disk: committed episodes, and the episode in progress partial in the spool."""
    s.saver.ds.set_aside_episode()
    s.saver.ds.close()


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
@pytest.mark.parametrize("case", ["mid-episode", "begun", "end-first", "none-spooled", "discard"])
def test_recovery_replays_a_dead_savers_note_into_its_partial_episode(tmp_path, case, version):
    root = tmp_path / "ds"
    s = Stream(root, use_async=False, dataset_version=version)
    s.episode(0, 3)
    if case == "mid-episode":  # took frames 0-2 of episode 1, acknowledged 0 only
        s.control("begin", 1)
        sent = s.captured(lambda: (s.frames(1, 6), s.control("end", 1), s.control("begin", 2), s.frames(2, 2)))
        s.deliver(sent[:3])
        note, expected = sent[1:], {1: [0, 1, 2, 3, 4, 5], 2: [0, 1]}
    elif case == "begun":  # took begin and frames 0-1 of episode 1, acknowledged none of them
        sent = s.captured(lambda: (s.control("begin", 1), s.frames(1, 5)))
        s.deliver(sent[:3])
        note, expected = sent, {1: [0, 1, 2, 3, 4]}
    elif case == "end-first":  # took all of episode 1, not its end; episode 2 never reached it
        s.control("begin", 1)
        s.frames(1, 3)
        note = s.captured(lambda: (s.control("end", 1), s.control("begin", 2), s.frames(2, 2)))
        expected = {1: [0, 1, 2], 2: [0, 1]}
    elif case == "none-spooled":  # took (and acknowledged) the begin of episode 1, none of its frames
        begin = s.captured(lambda: s.control("begin", 1))
        s.deliver(begin)
        note, expected = begin + s.captured(lambda: s.frames(1, 4)), {1: [0, 1, 2, 3]}
    else:  # took frames 0-2 of episode 1, which the recorder then discarded and recorded again
        s.control("begin", 1)
        s.frames(1, 3)
        note = s.captured(lambda: (s.frames(1, 1, start=3), s.control("discard", 1), s.control("begin", 1),
                                   s.frames(1, 2)))
        expected = {1: [0, 1]}
    die(s)
    write_stop_note(root, note)
    out = recover(root)
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == version and info["total_episodes"] == 1 + len(expected), out
    assert info["total_frames"] == 3 + sum(map(len, expected.values())), out
    for episode, frames in expected.items():
        assert states(root, episode) == frames
    assert "✗" not in out and not (root / ".spool").exists() and not (root / ".episodes/.spool").exists()


def test_recovery_names_the_frames_of_a_note_that_join_no_spooled_episode(tmp_path):
    root = tmp_path / "ds"
    s = Stream(root, use_async=False)
    s.control("begin", 0)
    sent = s.captured(lambda: s.frames(0, 6))
    s.deliver(sent[:2])
    die(s)
    write_stop_note(root, sent[4:])  # frames 2 and 3 are in no note: frames 4 and 5 cannot follow frame 1
    out = recover(root)
    assert "✗ 2 frames of episode 0 in the note have no spooled episode to join" in out
    assert states(root, 0) == [0, 1]


def test_a_note_an_earlier_session_left_joins_that_sessions_episode_before_recording_resumes(tmp_path):
    root = tmp_path / "ds"
    earlier = Stream(root, use_async=False)
    earlier.episode(0, 3)
    earlier.control("begin", 1)
    sent = earlier.captured(lambda: (earlier.frames(1, 4), earlier.control("end", 1)))
    earlier.deliver(sent[:2])
    die(earlier)
    write_stop_note(root, sent[1:])
    s = Stream(root)
    s.episode(0, 2)
    s.control("finish", 1)
    info = json.loads((root / "meta/info.json").read_text())
    assert info["total_episodes"] == 3 and info["total_frames"] == 9 and s.saver.errors == []
    assert s.saver.status().frames_committed == 2, "this session's count is its own"
    assert states(root, 1) == [0, 1, 2, 3] and states(root, 2) == [0, 1]
    assert any("an earlier session's note: episode 1: ended in the note; committed as episode 1" in line for line in s.said)


def test_recovery_without_include_partial_names_the_note_and_discard_partial_deletes_it(tmp_path):
    root = tmp_path / "ds"
    s = Stream(root, use_async=False)
    s.control("begin", 0)
    sent = s.captured(lambda: s.frames(0, 4))
    s.deliver(sent[:2])
    die(s)
    write_stop_note(root, sent[1:])
    assert "holds 3 frames the saver never acknowledged; --include-partial adds them" in recover(root, "--vcodec=libx264")
    assert (root / ".spool/recorder_stop/note.json").exists()
    assert "deleted the recorder's note (3 frames the saver never acknowledged)" in recover(root, "--discard-partial")
    assert not (root / ".spool").exists()
