"""dataset/spool.py on its own: what a spooled episode holds on disk, read back after a restart, and how it
refuses bad frames and writes after hand-over."""

import json

import numpy as np
import pytest

from operating_platform.dataset.format import DatasetFormatError
from operating_platform.dataset.spool import (
    ENDED_MARKER,
    VECTORS_FILE,
    EpisodeBuffer,
    SpoolClosedError,
    SpoolLayout,
    load_spooled_episode,
    spooled_episode_dirs,
)

LAYOUT = SpoolLayout(vector_shapes={"observation.state": 3, "action": 2},
                     camera_shapes={"observation.images.top": (4, 6, 3)})
TOP = "observation.images.top"


def frame(i: int) -> dict:
    return {"observation.state": np.array([i, i + 0.5, -i], np.float32), "action": np.array([2 * i, 1], np.float32),
            TOP: np.full((4, 6, 3), i % 256, np.uint8)}


def spooled(tmp_path, n: int, tasks=("pick",)) -> EpisodeBuffer:
    buf = EpisodeBuffer.create(tmp_path / "spool" / "ep0", LAYOUT, fps=30)
    for i in range(n):
        buf.add_frame(frame(i), task=tasks[i % len(tasks)])
    return buf


def test_frames_read_back_exactly_with_their_tasks(tmp_path):
    buf = spooled(tmp_path, 5, tasks=("pick", "place"))
    vectors, task_ids = buf.read_vectors()
    assert vectors["observation.state"].tolist() == [frame(i)["observation.state"].tolist() for i in range(5)]
    assert vectors["action"].dtype == np.float32 and vectors["action"][3].tolist() == [6, 1]
    assert [buf.tasks[t] for t in task_ids] == ["pick", "place", "pick", "place", "pick"]
    assert np.array_equal(buf.frame(TOP, 4), frame(4)[TOP])
    assert (buf.path / VECTORS_FILE).stat().st_size == 5 * LAYOUT.record_bytes == 5 * (5 * 4 + 4)


def test_reopened_after_a_restart_with_a_torn_frame_trimmed(tmp_path):
    buf = spooled(tmp_path, 3)
    with open(buf.path / VECTORS_FILE, "ab") as f:  # a crash in the middle of the 4th frame's record
        f.write(b"\0" * (LAYOUT.record_bytes // 2))
    again = load_spooled_episode(buf.path)
    assert (again.num_frames, again.ended, again.tasks) == (3, False, ["pick"])
    assert again.read_vectors()[0]["action"][:, 0].tolist() == [0, 2, 4]


def test_end_seals_the_episode_and_later_frames_are_refused(tmp_path):
    buf = spooled(tmp_path, 2)
    buf.end()
    assert json.loads((buf.path / ENDED_MARKER).read_text())["num_frames"] == 2
    assert load_spooled_episode(buf.path).ended
    with pytest.raises(SpoolClosedError):
        buf.add_frame(frame(2), task="pick")
    assert not buf.wait_for_frame(2, timeout=0.01)  # a follower of the spool stops at the end


def test_an_empty_episode_cannot_be_sealed(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        spooled(tmp_path, 0).end()


@pytest.mark.parametrize("change, message", [
    (lambda f: f.pop("action"), "missing feature 'action'"),
    (lambda f: f.update(action=np.zeros(3, np.float32)), "'action' has shape"),
    (lambda f: f.update(action=np.array([np.nan, 0], np.float32)), "NaN or inf"),
    (lambda f: f.update({TOP: np.zeros((4, 6, 3), np.float32)}), "expected uint8"),
    (lambda f: f.update(extra=1), "unknown features"),
])
def test_a_bad_frame_is_refused_and_nothing_is_written(tmp_path, change, message):
    buf = spooled(tmp_path, 1)
    bad = frame(1)
    change(bad)
    with pytest.raises(ValueError, match=message):
        buf.add_frame(bad, task="pick")
    assert buf.num_frames == 1 and load_spooled_episode(buf.path).num_frames == 1


def test_a_truncated_camera_file_is_named(tmp_path):
    buf = spooled(tmp_path, 2)
    with pytest.raises(DatasetFormatError, match="frame 5 is truncated"):
        buf.frame(TOP, 5)


def test_discard_removes_the_spool_and_episodes_list_in_recording_order(tmp_path):
    root = tmp_path / "spool"
    for name in ("0002", "0001", "0003"):
        EpisodeBuffer.create(root / name, LAYOUT, fps=30)
    (root / "stray").mkdir()  # no spool.json: not an episode
    EpisodeBuffer(root / "0003", LAYOUT, 30).discard()
    assert [p.name for p in spooled_episode_dirs(root)] == ["0001", "0002"]
    assert spooled_episode_dirs(tmp_path / "none") == []
