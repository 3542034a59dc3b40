"""Video files with PyAV, the one module that opens them: encode, probe, decode.

Nothing here knows the dataset: an encoder takes frames (any iterable, one that blocks
while a recording goes on included), probes and decoders take a path. Frame i gets pts i
in a 1/fps time base, so decoded timestamps sit exactly on the i/fps grid that LeRobot's
reader checks.
"""

from __future__ import annotations

import os
import queue
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner per encoder; keep its errors only

import av  # noqa: E402
import numpy as np  # noqa: E402

from .format import DEFAULT_CRF, DEFAULT_GOP, DEFAULT_PIX_FMT, DEFAULT_VIDEO_CODEC, fsync_file  # noqa: E402
from .scheduling import no_real_time_promotion  # noqa: E402


# SVT-AV1's own default (8) encodes two 640x480 streams at ~1x real time on 2 cores;
# preset 10 reaches ~2.5x for a few percent more bytes at the same CRF.
DEFAULT_PRESETS = {"libsvtav1": "10"}


class VideoEncodeError(RuntimeError):
    """Encoding an episode's video failed (codec missing, disk full, ...)."""


@dataclass(frozen=True)
class VideoEncoding:
    """Codec settings. LeRobot's defaults: libsvtav1, yuv420p, g=2, crf=30."""

    vcodec: str = DEFAULT_VIDEO_CODEC
    pix_fmt: str = DEFAULT_PIX_FMT
    g: int | None = DEFAULT_GOP
    crf: int | None = DEFAULT_CRF
    preset: str | None = None  # None: DEFAULT_PRESETS, else the codec's own (libsvtav1: 0-13, libx264: ultrafast..)

    def options(self) -> dict[str, str]:
        opts = {}
        if self.g is not None:
            opts["g"] = str(self.g)
        if self.crf is not None and self.vcodec in ("libsvtav1", "libx264", "libx265", "libaom-av1", "libvpx-vp9"):
            opts["crf"] = str(self.crf)
        preset = self.preset if self.preset is not None else DEFAULT_PRESETS.get(self.vcodec)
        if preset is not None:
            opts["preset"] = str(preset)
        return opts

    def check_available(self) -> None:
        try:
            av.codec.Codec(self.vcodec, "w")
        except Exception as e:  # av raises UnknownCodecError / ValueError depending on version
            raise VideoEncodeError(f"video codec {self.vcodec!r} is not available in this PyAV build ({e})") from e


class VideoFileWriter:
    """One mp4, frames pushed one by one. The file is fsynced on close."""

    def __init__(self, path: Path, width: int, height: int, fps: int, encoding: VideoEncoding):
        self.path = path
        self.fps = fps
        self.frames_written = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._container = av.open(str(path), mode="w")
            self._stream = self._container.add_stream(encoding.vcodec, rate=fps)
            self._stream.width, self._stream.height = width, height
            self._stream.pix_fmt = encoding.pix_fmt
            self._stream.options = encoding.options()
            with no_real_time_promotion():  # SVT-AV1 makes its threads real-time when run as root
                self._stream.codec_context.open()
        except Exception as e:
            raise VideoEncodeError(f"{path}: cannot open {encoding.vcodec} encoder: {e}") from e

    def write(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames_written  # in the encoder's 1/fps time base: frame i at i/fps
        self._container.mux(self._stream.encode(frame))
        self.frames_written += 1

    def close(self) -> int:
        self._container.mux(self._stream.encode(None))
        self._container.close()
        fsync_file(self.path)
        return self.frames_written

    def abort(self) -> None:
        """Drop the file. The encoder is still drained: SVT-AV1 complains if closed mid-stream."""
        try:
            self._container.mux(self._stream.encode(None))
        except Exception:  # noqa: BLE001 - the file is being thrown away; any encoder state will do
            pass
        try:
            self._container.close()
        except Exception:  # noqa: BLE001
            pass
        self.path.unlink(missing_ok=True)


def encode_video(frames: Iterable[np.ndarray], path: Path, fps: int, encoding: VideoEncoding, deadline=None) -> int:
    """Encode `frames` (H,W,3 RGB) into `path`; returns the frame count.

    `deadline` is a callable raising when the save's time budget is spent, checked per frame.
    """
    writer = None
    try:
        for rgb in frames:
            if writer is None:
                writer = VideoFileWriter(path, rgb.shape[1], rgb.shape[0], fps, encoding)
            writer.write(rgb)
            if deadline is not None:
                deadline()
        if writer is None:
            raise VideoEncodeError(f"{path}: no frames to encode")
        return writer.close()
    except BaseException as e:
        if writer is not None:
            writer.abort()
        if isinstance(e, (VideoEncodeError, TimeoutError)):
            raise
        raise VideoEncodeError(f"{path}: encoding failed: {e}") from e


class EncodeJob:
    """One video encoded on an EncoderThread; `finish()` waits for it."""

    def __init__(self, frames: Iterable[np.ndarray], path: Path, fps: int, encoding: VideoEncoding):
        self.frames, self.path, self.fps, self.encoding = frames, path, fps, encoding
        self.frames_encoded: int | None = None  # set once the file is closed whole
        self.error: BaseException | None = None
        self._done = threading.Event()

    def run(self) -> None:
        try:
            self.frames_encoded = encode_video(self.frames, self.path, self.fps, self.encoding)
        except BaseException as e:  # noqa: BLE001 - reported through `error`, never lost
            self.error = e
        finally:
            self.frames = None  # a generator following a recording holds its buffer
            self._done.set()

    def finish(self, timeout: float | None = None) -> bool:
        """True once the file is written whole (`frames_encoded` frames)."""
        return self._done.wait(timeout) and self.error is None


class EncoderThread:
    """One long-lived thread that encodes videos one after another (a camera's episodes, as they are recorded).

    Long-lived on purpose: a fresh thread per video makes glibc hand each encoder a new
    malloc arena, and the process's memory then grows with every episode.
    """

    def __init__(self, name: str):
        self._jobs: queue.SimpleQueue[EncodeJob | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"VideoEncoder-{name}", daemon=True)
        self._thread.start()

    def submit(self, frames: Iterable[np.ndarray], path: Path, fps: int, encoding: VideoEncoding) -> EncodeJob:
        """Encode `frames` into `path` once earlier jobs are done; an iterable raising aborts the file."""
        job = EncodeJob(frames, path, fps, encoding)
        self._jobs.put(job)
        return job

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job.run()

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join()


# ---------------------------------------------------------------------- reading


class VideoFrameError(RuntimeError):
    """A video cannot be opened or decoded, or holds no frame at the asked time."""


@contextmanager
def _open_video(path: Path) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """The file and its first video stream. Use both inside the `with` only: touching a
    PyAV stream after its container closed segfaults."""
    try:
        container = av.open(str(path))
    except (OSError, av.FFmpegError) as e:
        raise VideoFrameError(f"{path}: cannot open video ({e})") from e
    with container:
        if not container.streams.video:
            raise VideoFrameError(f"{path}: no video stream")
        yield container, container.streams.video[0]


# ---------------------------------------------------------------------- probe


def probe_video_info(path: Path) -> dict:
    """The `info` block LeRobot keeps per camera, read from the written file."""
    with _open_video(path) as (container, stream):
        rate = stream.average_rate or stream.base_rate or stream.guessed_rate
        return {
            "video.height": stream.codec_context.height,
            "video.width": stream.codec_context.width,
            "video.codec": stream.codec_context.codec.canonical_name,  # "av1", not the decoder "libdav1d"
            "video.pix_fmt": stream.codec_context.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(round(float(rate))) if rate else None,
            "video.channels": 3,
            "has_audio": len(container.streams.audio) > 0,
        }


def video_frame_count(path: Path) -> int | None:
    """Frames in a finished video file (its container says), None when absent or unreadable."""
    try:
        with _open_video(path) as (_, stream):
            return stream.frames
    except VideoFrameError:
        return None


@dataclass(frozen=True)
class VideoProbe:
    """What a decoder sees in one mp4: the facts info.json and the parquet must agree with."""

    frames: int
    fps: float | None
    width: int
    height: int
    codec: str  # canonical name as ffprobe reports it (av1, h264), not the decoder library's
    pix_fmt: str | None
    has_audio: bool
    frame_times: list[float]  # presentation time of each decoded frame, seconds, sorted


def probe_video(path: Path) -> VideoProbe:
    """Decode every frame of the first video stream (packets demuxed and decoded, no pixel conversion)."""
    with _open_video(path) as (container, stream):
        stream.thread_type = "AUTO"
        times = [float(frame.time) for frame in container.decode(stream) if frame.time is not None]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        ctx = stream.codec_context
        return VideoProbe(
            frames=len(times),
            fps=float(rate) if rate else None,
            width=ctx.width,
            height=ctx.height,
            codec=ctx.codec.canonical_name,
            pix_fmt=ctx.pix_fmt,
            has_audio=len(container.streams.audio) > 0,
            frame_times=sorted(times),
        )


# ---------------------------------------------------------------------- decode


def iter_video_frames(path: Path) -> Iterator[np.ndarray]:
    """Every frame of `path` in order as RGB arrays, one at a time."""
    with _open_video(path) as (container, stream):
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")


def decode_video_frames(path: Path) -> list[np.ndarray]:
    """Every frame of `path` (tests and small tools; training seeks with VideoDecoder instead)."""
    return list(iter_video_frames(path))


# decode forward instead of seeking when the target is at most this far ahead
_FORWARD_WINDOW_S = 0.25


class VideoDecoder:
    """One open video read at any timestamp, in any order (training reads shuffled).

    A read seeks to the keyframe before the wanted timestamp and decodes forward; a read
    just after the previous one decodes forward without seeking. The frame returned lies
    within `tolerance_s` of the asked timestamp (as LeRobot checks), otherwise the error
    names the file, the timestamp and the nearest frame found.
    """

    def __init__(self, path: Path, tolerance_s: float):
        self.path, self.tolerance_s = path, tolerance_s
        self._open = ExitStack()
        self.container, self.stream = self._open.enter_context(_open_video(path))
        self.stream.thread_type = "AUTO"
        self.time_base: Fraction = self.stream.time_base
        self._frames = None  # decoder generator positioned after `_last_time`
        self._last_time: float | None = None
        self._last_frame: np.ndarray | None = None

    def frame_at(self, timestamp: float) -> np.ndarray:
        """RGB uint8 (h, w, 3) of the frame shown at `timestamp` seconds."""
        tol = self.tolerance_s
        if self._last_time is not None and abs(self._last_time - timestamp) <= tol:
            return self._last_frame
        try:
            ahead = self._last_time is not None and 0 < timestamp - self._last_time <= _FORWARD_WINDOW_S
            if not ahead:
                self.container.seek(int(timestamp / self.time_base), stream=self.stream, backward=True, any_frame=False)
                self._frames = self.container.decode(self.stream)
                self._last_time = None
            nearest = None
            for frame in self._frames:
                if frame.pts is None:
                    continue
                t = float(frame.pts * self.time_base)
                if nearest is None or abs(t - timestamp) < abs(nearest - timestamp):
                    nearest = t
                if t < timestamp - tol:
                    continue
                if t > timestamp + tol:
                    break
                self._last_time, self._last_frame = t, frame.to_ndarray(format="rgb24")
                return self._last_frame
        except av.FFmpegError as e:
            self._frames, self._last_time = None, None
            raise VideoFrameError(f"{self.path}: decoding at t={timestamp:.6f}s failed ({e})") from e
        self._frames, self._last_time = None, None
        found = "no frame at or after it" if nearest is None else f"nearest frame at {nearest:.6f}s"
        raise VideoFrameError(f"{self.path}: no frame within {tol}s of t={timestamp:.6f}s ({found})")

    def close(self) -> None:
        self._open.close()
