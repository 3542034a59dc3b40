"""OpenCVCamera with real OpenCV capture of real video files (made here with PyAV)."""

import shutil
import time

import av
import numpy as np
import pytest

from operating_platform.hardware.base import CameraReadError, CameraSource
from operating_platform.hardware.cameras.opencv import CameraOpenError, OpenCVCamera

W, H, FPS, N = 64, 48, 30, 12


def make_video(path, n=N, fps=FPS):
    """Frame i: red 200, green 0, blue 20*i, so channel order and frame order are both checkable."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"crf": "0"}
        for i in range(n):
            image = np.zeros((H, W, 3), np.uint8)
            image[..., 0] = 200
            image[..., 2] = 20 * i
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture
def video(tmp_path):
    return make_video(tmp_path / "cam.mp4")


def blue_of(frame):
    return int(round(frame[..., 2].mean() / 20))


def test_reads_rgb_frames_in_order_with_the_files_size_and_rate(video):
    camera = OpenCVCamera(video, width=640, height=480, fps=60)  # a file cannot be resized: actual values reported
    assert isinstance(camera, CameraSource)
    assert (camera.width, camera.height, camera.fps) == (W, H, FPS)
    frames = [camera.read() for _ in range(N)]
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)
    assert [blue_of(f) for f in frames] == list(range(N))
    assert abs(int(frames[0][..., 0].mean()) - 200) <= 3  # red stays red: RGB, not BGR
    camera.close()


def test_files_play_at_their_frame_rate(video):
    camera = OpenCVCamera(video)
    start = time.monotonic()
    for _ in range(N):
        camera.read()
    assert time.monotonic() - start >= (N - 1) / FPS * 0.95
    camera.close()


def test_loops_at_end_of_file_by_default_and_can_stop(video):
    looping = OpenCVCamera(video)
    assert [blue_of(looping.read()) for _ in range(N + 3)][N:] == [0, 1, 2]
    looping.close()
    once = OpenCVCamera(video, loop=False)
    for _ in range(N):
        once.read()
    with pytest.raises(CameraReadError, match=f"end of video file after {N} frames"):
        once.read()
    once.close()


def test_lost_source_reconnects_with_backoff_and_reports_the_gap(video, tmp_path):
    """The file vanishing at a reopen is the same failure path as an unplugged USB camera."""
    camera = OpenCVCamera(video, backoff_initial_s=0.05, backoff_max_s=0.2)
    for _ in range(N):
        camera.read()
    hidden = shutil.move(video, tmp_path / "hidden.mp4")
    messages = []
    for _ in range(5):
        with pytest.raises(CameraReadError) as info:
            camera.read()
        messages.append(str(info.value))
    assert messages[0].startswith(f"camera {video}: cannot open")
    assert "reconnect" in messages[-1] and "no frame for" in messages[0]
    shutil.move(hidden, video)
    deadline = time.monotonic() + 10
    while True:
        try:
            frame = camera.read()
            break
        except CameraReadError:
            assert time.monotonic() < deadline
    assert blue_of(frame) == 0  # a real frame from the source, never a filler
    assert len(camera.gaps) == 1 and camera.gaps[0] > 0.1
    camera.close()


def test_open_errors_name_the_device(tmp_path):
    with pytest.raises(CameraOpenError, match="camera /dev/video_nope: no such device or file"):
        OpenCVCamera("/dev/video_nope")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(CameraOpenError, match=f"camera {broken}: cannot open"):
        OpenCVCamera(broken)
    with pytest.raises(CameraOpenError, match="camera 63: cannot open"):
        OpenCVCamera(63)  # an index with no /dev/video63 behind it


def test_symlinked_sources_resolve_like_v4l_by_path(video, tmp_path):
    link = tmp_path / "by-path-usb-0:1.2:1.0-video-index0"
    link.symlink_to(video)
    camera = OpenCVCamera(str(link))
    assert camera.is_file and blue_of(camera.read()) == 0
    camera.close()


def test_a_character_device_that_is_no_camera_is_refused():
    with pytest.raises(CameraOpenError, match="camera /dev/null: cannot open"):
        OpenCVCamera("/dev/null")  # opened through V4L2 like /dev/videoN, which it is not


def test_a_recorded_episode_in_av1_plays_as_a_camera_file(tmp_path):
    """Datasets store AV1 (libsvtav1); OpenCV's FFmpeg cannot decode it, so files are read with PyAV."""
    from operating_platform.dataset.video import VideoEncoding, encode_video

    frames = [np.full((64, 96, 3), (200, 0, 20 * i), np.uint8) for i in range(6)]
    path = tmp_path / "episode_000000.mp4"
    encode_video(frames, path, fps=FPS, encoding=VideoEncoding())
    camera = OpenCVCamera(str(path), loop=False)
    got = [camera.read() for _ in range(6)]
    assert (camera.width, camera.height, camera.fps) == (96, 64, FPS)
    assert [blue_of(f) for f in got] == list(range(6)) and abs(int(got[0][..., 0].mean()) - 200) < 8
    with pytest.raises(CameraReadError, match="end of video file after 6 frames"):
        camera.read()


def test_a_file_that_is_not_a_video_is_refused_naming_it(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")
    with pytest.raises(CameraOpenError, match=f"camera {notes}: cannot open"):
        OpenCVCamera(str(notes))
