"""The pre-start check: every unusable device in one message, each line naming what and where."""

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from operating_platform.hardware.feetech.emulator import ServoBusEmulator
from operating_platform.hardware.so101.preflight import HardwareCheckError, check_so101_setup

CALIBRATION = Path(__file__).resolve().parents[1] / "calibration"


def tiny_video(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")))
        container.mux(stream.encode())
    return str(path)


def test_a_working_setup_passes(tmp_path):
    with ServoBusEmulator() as leader, ServoBusEmulator() as follower:
        check_so101_setup(leader.slave_path, follower.slave_path, CALIBRATION, {"top": tiny_video(tmp_path / "top.mp4")})
        assert leader.get(1, "Homing_Offset") == 0  # a check writes nothing


def test_every_problem_is_listed_once(tmp_path):
    shutil.copy(CALIBRATION / "so101_follower.json", tmp_path / "so101_follower.json")
    bad = json.loads((CALIBRATION / "so101_leader.json").read_text())
    bad["gripper"]["range_max"] = 5000
    (tmp_path / "so101_leader.json").write_text(json.dumps(bad))
    with ServoBusEmulator() as follower:
        follower.inject("missing", 6)
        with pytest.raises(HardwareCheckError) as info:
            check_so101_setup("/dev/ttyACM_gone", follower.slave_path, tmp_path, {"wrist": "/dev/video_gone"})
    assert str(info.value).splitlines() == [
        "SO-101 setup check failed:",
        f"  leader arm: {tmp_path}/so101_leader.json: field 'gripper.range_max': 5000 is outside 0..4095",
        "  leader arm: cannot open serial port at 1000000 baud: could not open port /dev/ttyACM_gone: "
        "[Errno 2] No such file or directory: '/dev/ttyACM_gone' (port /dev/ttyACM_gone)",
        "  follower arm: servo(s) id 6 (gripper) do not answer PING; check the 3-pin cables, the power supply "
        f"and that this is the right port (port {follower.slave_path}, servo id 6)",
        "  camera wrist: camera /dev/video_gone: no such device or file",
    ]
