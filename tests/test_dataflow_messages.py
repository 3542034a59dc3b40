"""The Arrow message contract: round trips, and every malformed message rejected with a reason."""

import json
from dataclasses import asdict

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from operating_platform.dataflow.messages import (
    EpisodeLayout,
    InOrder,
    MessageError,
    RecorderStatus,
    SaverStatus,
    SeqTracker,
    decode_episode,
    decode_image,
    decode_joint,
    decode_key,
    decode_status,
    encode_episode_control,
    encode_episode_frame,
    encode_image,
    encode_joint,
    encode_key,
    encode_status,
)

NAMES = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


def frame(h=4, w=6, seed=0):
    return np.random.default_rng(seed).integers(0, 255, size=(h, w, 3), dtype=np.uint8)


def test_image_round_trip_and_bgr_is_converted_to_rgb():
    img = frame()
    value, meta = encode_image(img, seq=7, stamp_ns=123)
    msg = decode_image(value, meta)
    assert np.array_equal(msg.frame, img) and msg.seq == 7 and msg.stamp_ns == 123
    value, meta = encode_image(img, 1, 1, encoding="bgr8")
    assert np.array_equal(decode_image(value, meta).frame, img[:, :, ::-1])


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda v, m: (pa.array(np.zeros(72, np.float32)), m), "dtype float"),
        (lambda v, m: (v.slice(0, 71), m), "72"),
        (lambda v, m: (v, {k: x for k, x in m.items() if k != "width"}), "`width` missing"),
        (lambda v, m: (v, {k: x for k, x in m.items() if k != "stamp_ns"}), "`stamp_ns` missing"),
        (lambda v, m: (v, {**m, "encoding": "yuv"}), "unsupported"),
        (lambda v, m: (v, {**m, "seq": "1"}), "`seq` has type str"),
        (lambda v, m: (v, None), "missing"),
        (lambda v, m: (v.to_numpy(), m), "Arrow array"),
    ],
)
def test_malformed_image_is_rejected_with_its_reason(mutate, reason):
    value, meta = encode_image(frame(), 1, 1)
    bad_value, bad_meta = mutate(value, meta)
    with pytest.raises(MessageError, match=reason):
        decode_image(bad_value, bad_meta)


def test_joint_round_trip_and_rejections():
    value, meta = encode_joint(np.arange(6), NAMES, 3, 9)
    msg = decode_joint(value, meta, expected_names=NAMES)
    assert msg.positions.dtype == np.float32 and list(msg.positions) == list(range(6)) and msg.names == NAMES
    with pytest.raises(MessageError, match="dtype double"):
        decode_joint(pa.array(np.zeros(6)), meta)
    with pytest.raises(MessageError, match="5 positions for 6 names"):
        decode_joint(pa.array(np.zeros(5, np.float32)), meta)
    with pytest.raises(MessageError, match="differ from the expected"):
        decode_joint(value, {**meta, "names": NAMES[::-1]}, expected_names=NAMES)
    with pytest.raises(MessageError, match="NaN"):
        decode_joint(pa.array(np.full(6, np.nan, np.float32)), meta)
    with pytest.raises(MessageError, match="`names` missing"):
        decode_joint(value, {"seq": 1, "stamp_ns": 1})


def test_key_and_status():
    assert decode_key(encode_key("n")) == "n"
    with pytest.raises(MessageError):
        decode_key(pa.array([1]))
    with pytest.raises(MessageError):
        decode_key(pa.array(["a", "b"]))
    with pytest.raises(MessageError, match="JSON"):
        decode_status(pa.array(["{not json"]), SaverStatus)
    with pytest.raises(MessageError, match="expected an object"):
        decode_status(pa.array(["[1]"]), SaverStatus)


def test_status_records_round_trip_and_every_field_is_checked():
    saver = SaverStatus(handled_seq=7, frames_committed=90, rejected={"duplicate": 1}, errors=["x"], minutes_left=3.5,
                        root="/data/x", done=True)
    assert decode_status(encode_status(saver), SaverStatus) == saver
    recorder = RecorderStatus(phase="recording", episode=2, save_response_ms=[1.5, 2.0], staleness={"leader": {"max_ms": 1}})
    assert decode_status(encode_status(recorder), RecorderStatus) == recorder
    raw = asdict(saver)

    def decoded(**change):
        fields = {k: v for k, v in {**raw, **change}.items() if v is not ...}
        return decode_status(pa.array([json.dumps(fields)]), SaverStatus)

    with pytest.raises(MessageError, match="SaverStatus has no field frames_saved"):
        decoded(frames_saved=90, frames_committed=...)  # a renamed field
    with pytest.raises(MessageError, match="SaverStatus field handled_seq missing"):
        decoded(handled_seq=...)
    with pytest.raises(MessageError, match=r"SaverStatus.frames_committed is str '90', expected <class 'int'>"):
        decoded(frames_committed="90")
    with pytest.raises(MessageError, match="SaverStatus.done is int"):
        decoded(done=1)
    with pytest.raises(MessageError, match="RecorderStatus has no field completed, done"):
        decode_status(encode_status(saver), RecorderStatus)  # the saver's status on the recorder's input
    assert decoded(minutes_left=3).minutes_left == 3 and decoded(last_error="boom").last_error == "boom"


def test_episode_frame_round_trip():
    layout = EpisodeLayout(NAMES, {"top": (4, 6), "wrist": (2, 3)})
    images = {"top": frame(4, 6, 1), "wrist": frame(2, 3, 2)}
    state, action = np.arange(6, dtype=np.float32), -np.arange(6, dtype=np.float32)
    value, meta = encode_episode_frame(5, 2, 9, layout, state, action, images, stamp_ns=1)
    msg = decode_episode(value, meta)
    assert (msg.kind, msg.seq, msg.episode_index, msg.frame_index) == ("frame", 5, 2, 9)
    assert msg.layout == layout
    assert np.array_equal(msg.state, state) and np.array_equal(msg.action, action)
    assert all(np.array_equal(msg.images[c], images[c]) for c in images)


def test_episode_controls_and_malformed_frames():
    layout = EpisodeLayout(NAMES, {"top": (4, 6)})
    value, meta = encode_episode_control("begin", 1, 0, "task", layout)
    begin = decode_episode(value, meta)
    assert begin.kind == "begin" and begin.layout == layout and begin.task == "task"
    assert decode_episode(*encode_episode_control("end", 2, 0)).kind == "end"
    value, meta = encode_episode_frame(3, 0, 0, layout, np.zeros(6), np.zeros(6), {"top": frame()}, 1)
    with pytest.raises(MessageError, match="payload is"):
        decode_episode(value.slice(1), meta)
    with pytest.raises(MessageError, match="kind 'bogus' unknown"):
        decode_episode(value, {**meta, "kind": "bogus"})
    with pytest.raises(MessageError, match="camera_shapes"):
        decode_episode(value, {**meta, "camera_shapes": [4]})
    with pytest.raises(MessageError, match="`frame_index` missing"):
        decode_episode(value, {k: v for k, v in meta.items() if k != "frame_index"})


def test_seq_tracker_counts_missing_messages_and_refuses_old_ones():
    tracker = SeqTracker()
    assert [tracker.see(s) for s in (1, 2, 5, 6, 6, 4, 9)] == [True, True, True, True, False, False, True]
    assert tracker.gaps == 4 and tracker.last == 9


def test_in_order_drops_duplicates_reorders_swaps_and_counts_what_never_came():
    stream = InOrder(window=3)
    out = []
    for seq in (1, 2, 2, 4, 3, 5, 1):
        out += stream.push(seq, seq)
    assert out == [1, 2, 3, 4, 5] and stream.duplicates == 2 and stream.reordered == 1 and stream.gaps == 0
    for seq in (7, 8, 9):  # 6 is lost: the three after it wait
        out += stream.push(seq, seq)
    assert out[-1] == 5 and stream.handled == 5
    out += stream.push(10, 10)  # a fourth one: the window is full, 6 is given up
    assert out[-4:] == [7, 8, 9, 10] and stream.gaps == 1 and stream.handled == 10
    out += stream.push(12, 12)
    assert stream.give_up() == [12] and stream.gaps == 2 and stream.handled == 12


@given(st.permutations(list(range(1, 30))), st.lists(st.integers(1, 29), max_size=10))
def test_in_order_releases_every_message_once_whatever_the_arrival_order(order, dups):
    stream = InOrder(window=40)
    out = []
    for seq in order + dups:
        out += stream.push(seq, seq)
    assert out == list(range(1, 30)) and stream.duplicates == len(dups) and stream.gaps == 0
