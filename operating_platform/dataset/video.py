"""Episode videos with PyAV: encode (all at once or following a live spool) and probe.

Frame i gets pts i in a 1/fps time base, so decoded timestamps sit exactly on the
i/fps grid that LeRobot's reader checks.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner per encoder; keep its errors only

import av  # noqa: E402
import numpy as np  # noqa: E402

from .format import DEFAULT_CRF, DEFAULT_GOP, DEFAULT_PIX_FMT, DEFAULT_VIDEO_CODEC  # noqa: E402
from .scheduling import no_real_time_promotion  # noqa: E402
from .spool import EpisodeBuffer  # noqa: E402


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
        with open(self.path, "rb") as f:
            os.fsync(f.fileno())
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


class LiveEncode:
    """The encode of one camera of the episode being recorded, following its spool.

    Why: with it, the end of an episode leaves only the last few frames to encode,
    so the episode is on disk seconds after it ends instead of a full encode later.
    Any failure is kept in `error`; the saver then re-encodes from the spool.
    """

    def __init__(self, buffer: EpisodeBuffer, video_key: str, path: Path, encoding: VideoEncoding):
        self.buffer, self.video_key, self.path, self.encoding = buffer, video_key, path, encoding
        self.frames_encoded = 0
        self.error: BaseException | None = None
        self._done = threading.Event()

    def run(self) -> None:
        h, w, _ = self.buffer.layout.camera_shapes[self.video_key]
        writer = None
        try:
            writer = VideoFileWriter(self.path, w, h, self.buffer.fps, self.encoding)
            while self.buffer.wait_for_frame(self.frames_encoded):
                writer.write(self.buffer.frame(self.video_key, self.frames_encoded))
                self.frames_encoded += 1
            if self.buffer.discarded:
                writer.abort()
            else:
                writer.close()
        except BaseException as e:  # noqa: BLE001 - reported through `error`, never lost
            self.error = e
            if writer is not None:
                writer.abort()
        finally:
            self._done.set()

    def finish(self, timeout: float | None = None) -> bool:
        """Wait for the encode of an ended episode; True if the file holds every frame."""
        return self._done.wait(timeout) and self.error is None and self.frames_encoded == self.buffer.num_frames


class LiveEncoderThread:
    """One long-lived thread per camera runs that camera's live encodes, one episode after another.

    Long-lived on purpose: a fresh thread per episode makes glibc hand each encoder a new
    malloc arena, and the process's memory then grows with every episode.
    """

    def __init__(self, video_key: str, encoding: VideoEncoding):
        self.video_key, self.encoding = video_key, encoding
        self._jobs: queue.SimpleQueue[LiveEncode | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"LiveEncoder-{video_key}", daemon=True)
        self._thread.start()

    def follow(self, buffer: EpisodeBuffer, path: Path) -> LiveEncode:
        job = LiveEncode(buffer, self.video_key, path, self.encoding)
        self._jobs.put(job)
        return job

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job.run()

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join()


def probe_video_info(path: Path) -> dict:
    """The `info` block LeRobot keeps per camera, read from the written file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
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


def decode_video_frames(path: Path) -> list[np.ndarray]:
    """Every frame of `path` as RGB arrays (tests and small tools; the training reader seeks instead)."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
