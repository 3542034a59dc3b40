"""Camera and arm node logic with the simulated devices (and a failing device), driven by ticks."""

import zlib

import numpy as np
import pyarrow as pa
import pytest

from operating_platform.dataflow.arm import ArmPublisher, arm_from_env
from operating_platform.dataflow.camera import CameraPublisher, camera_from_env, open_camera
from operating_platform.dataflow.messages import decode_image, decode_joint, encode_joint
from operating_platform.hardware.base import SO101_JOINT_NAMES, ArmDriver, CameraReadError, CameraSource
from operating_platform.simulation.arm import SO101_LIMITS, SimFollowerArm, SimLeaderArm
from operating_platform.simulation.camera import SimCamera


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class Sink(list):
    def __call__(self, output_id, value, metadata):
        self.append((output_id, value, metadata))


def test_sim_devices_implement_the_seams():
    assert isinstance(SimCamera("top", 64, 48), CameraSource)
    assert isinstance(SimLeaderArm(), ArmDriver) and isinstance(SimFollowerArm(), ArmDriver)


def test_sim_camera_frames_move_differ_per_camera_and_compress_like_video():
    clock = Clock()
    top, wrist = SimCamera("top", clock=clock), SimCamera("wrist", clock=clock)
    first = top.read()
    clock.t = 0.5
    later = top.read()
    assert first.shape == (480, 640, 3) and first.dtype == np.uint8
    assert np.mean(first != later) > 0.2, "frames must change over time"
    assert np.mean(top.read() != wrist.read()) > 0.5, "cameras must show different content"
    ratio = len(zlib.compress(later.tobytes(), 1)) / later.nbytes
    assert 0.05 < ratio < 0.95, f"neither flat nor pure noise (zlib ratio {ratio:.2f})"


def test_camera_publisher_stamps_and_numbers_frames_and_skips_failed_reads():
    class Flaky:
        width, height, fps = 8, 4, 30

        def __init__(self):
            self.calls = 0

        def read(self):
            self.calls += 1
            if self.calls == 2:
                raise CameraReadError("USB hiccup")
            return np.full((4, 8, 3), self.calls, np.uint8)

        def close(self):
            pass

    sink, stamps = Sink(), iter(range(100, 200))
    cam = CameraPublisher(Flaky(), sink, name="top", clock_ns=lambda: next(stamps))
    for _ in range(3):
        cam.on_tick()
    msgs = [decode_image(v, m) for _, v, m in sink]
    assert [m.seq for m in msgs] == [1, 2] and [int(m.frame[0, 0, 0]) for m in msgs] == [1, 3]
    assert msgs[0].stamp_ns < msgs[1].stamp_ns
    assert cam.problems.counts["read"] == 1


def test_camera_factory_errors_are_clear():
    with pytest.raises(ValueError, match="unknown source 'kinect'"):
        open_camera("kinect", "top")
    with pytest.raises(ValueError, match="needs CAMERA_DEVICE"):
        open_camera("opencv", "top")
    with pytest.raises(ValueError, match="CAMERA_WIDTH=.wide. is not a valid int"):
        camera_from_env({"CAMERA_WIDTH": "wide"})
    assert camera_from_env({"CAMERA_NAME": "top", "CAMERA_WIDTH": "64", "CAMERA_HEIGHT": "48"}).read().shape == (48, 64, 3)


def test_sim_leader_moves_smoothly_within_limits():
    clock = Clock()
    leader = SimLeaderArm(clock=clock)
    samples = []
    for i in range(300):
        clock.t = i / 30
        samples.append(leader.read_joints())
    samples = np.array(samples)
    assert samples.dtype == np.float32 and samples.shape == (300, 6)
    assert np.all(samples >= SO101_LIMITS[:, 0]) and np.all(samples <= SO101_LIMITS[:, 1])
    assert np.all(samples.std(axis=0) > 1.0), "every joint moves"
    assert np.abs(np.diff(samples, axis=0)).max() < 15, "no jumps between frames"
    assert 0 <= samples[:, 5].min() and samples[:, 5].max() <= 100


def test_sim_follower_lags_behind_its_goal_and_respects_limits():
    clock = Clock()
    follower = SimFollowerArm(clock=clock)
    goal = np.array([30, -30, 40, 20, 10, 90], np.float32)
    follower.write_goal(goal)
    clock.t = 0.02
    early = follower.read_joints()
    clock.t = 2.0
    late = follower.read_joints()
    assert np.abs(early - goal).max() > 5, "it lags"
    assert np.allclose(late, goal, atol=0.5), "it arrives"
    follower.write_goal(np.array([500, 0, 0, 0, 0, 150], np.float32))
    clock.t = 10.0
    assert follower.read_joints()[0] <= SO101_LIMITS[0, 1] and follower.read_joints()[5] <= 100
    with pytest.raises(ValueError, match="expected 6"):
        follower.write_goal(np.zeros(5))


def test_follower_node_obeys_valid_actions_and_counts_malformed_ones():
    clock = Clock()
    sink = Sink()
    arm = ArmPublisher(SimFollowerArm(clock=clock), sink, role="follower")
    goal = np.full(6, 20, np.float32)
    arm.on_action(*encode_joint(goal, SO101_JOINT_NAMES, 1, 1))
    arm.on_action(pa.array(np.zeros(6)), {"names": SO101_JOINT_NAMES, "seq": 2, "stamp_ns": 2})  # float64
    arm.on_action(pa.array(np.zeros(6, np.float32)), {"seq": 3, "stamp_ns": 3})  # no names
    arm.on_action(*encode_joint(np.zeros(6), ["a", "b", "c", "d", "e", "f"], 4, 4))  # other arm's joints
    clock.t = 3.0
    arm.on_tick()
    (out, value, meta), = sink
    msg = decode_joint(value, meta, expected_names=SO101_JOINT_NAMES)
    assert out == "joint" and np.allclose(msg.positions, goal, atol=0.5)
    assert arm.goals_applied == 1 and arm.problems.counts["action"] == 3


def test_arm_read_failure_is_counted_not_fatal():
    class Broken(SimLeaderArm):
        def read_joints(self):
            raise OSError("bus timeout on servo 3")

    sink = Sink()
    arm = ArmPublisher(Broken(), sink)
    arm.on_tick()
    assert sink == [] and arm.problems.counts["read"] == 1


def test_arm_factory_picks_sim_or_explains_what_so101_needs():
    assert isinstance(arm_from_env({"ARM_ROLE": "leader"}), SimLeaderArm)
    assert isinstance(arm_from_env({"ARM_ROLE": "follower"}), SimFollowerArm)
    with pytest.raises(ValueError, match="needs ARM_PORT and ARM_CALIBRATION"):
        arm_from_env({"ARM_DRIVER": "so101", "ARM_ROLE": "leader"})
    with pytest.raises(ValueError, match="ARM_ROLE='boss'"):
        arm_from_env({"ARM_ROLE": "boss"})
    with pytest.raises(ValueError, match="ARM_DRIVER='ur5'"):
        arm_from_env({"ARM_DRIVER": "ur5"})


def test_camera_node_reads_a_video_file_through_the_opencv_source(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(10):
            img = np.full((120, 160, 3), i * 20, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode())
    source = camera_from_env({"CAMERA_NAME": "top", "CAMERA_SOURCE": "opencv", "CAMERA_DEVICE": str(path),
                              "CAMERA_WIDTH": "160", "CAMERA_HEIGHT": "120"})
    sink = Sink()
    camera = CameraPublisher(source, sink, name="top")
    try:
        for _ in range(3):
            camera.on_tick()
    finally:
        camera.close()
    frames = [decode_image(v, m).frame for _, v, m in sink]
    assert len(frames) == 3 and frames[0].shape == (120, 160, 3)
    assert frames[2].mean() > frames[0].mean(), "successive frames of the file"
