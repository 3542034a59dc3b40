"""How much disk recording needs, and whether the dataset root has it.

Per frame, recording costs two amounts of space:
  raw       the spool: every camera's pixels (h*w*3 bytes) plus the vector record. It is
            held from the frame's capture until its episode is committed, and is far
            larger than the result (a 640x480 frame is 900 KB raw, a few KB encoded).
  encoded   what stays in the dataset: video + parquet. Measured from the committed
            episodes (bytes of data/ and videos/ per committed frame) when the dataset has
            some; otherwise assumed from a deliberately high bits-per-pixel figure for the
            codec, so a new dataset is never promised more than it gets.
An episode needs raw + encoded for each of its frames at its peak (spool and encoded
files exist together until the commit removes the spool). Minutes left counts the
encoded rate only, after reserving one episode's peak: what stays is what fills a disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import format as fmt

# Bits per pixel assumed for a dataset with no committed episode: several times what these
# codecs produce at LeRobot's settings on camera footage (crf 30, g=2), on purpose.
ASSUMED_BITS_PER_PIXEL = {"libsvtav1": 0.3, "libaom-av1": 0.3, "libx264": 0.6, "h264": 0.6, "libx265": 0.4, "hevc": 0.4}
ASSUMED_BITS_PER_PIXEL_OTHER = 1.0
PARQUET_BYTES_PER_FLOAT = 8  # row overhead included, generous
PREFLIGHT_EPISODES = 3  # recording starts only with room for this many episodes
LOW_SPACE_MINUTES = 10.0  # the status warns below this


class InsufficientSpaceError(OSError):
    """The dataset root cannot hold what recording is about to write."""


@dataclass(frozen=True)
class SpaceEstimate:
    raw_bytes_per_frame: int
    encoded_bytes_per_frame: float
    how: str  # "measured over N committed episodes" or "assumed X bits/pixel for <codec>"

    def episode_peak_bytes(self, frames: int) -> int:
        return int(frames * (self.raw_bytes_per_frame + self.encoded_bytes_per_frame))

    def minutes_left(self, free: int, fps: int, reserve_frames: int) -> float:
        """Minutes of recording `free` bytes hold once one episode of `reserve_frames` frames is reserved."""
        usable = free - self.episode_peak_bytes(reserve_frames)
        return max(0.0, usable / (self.encoded_bytes_per_frame * fps) / 60.0)


def estimate(cameras: dict[str, tuple[int, int]], vector_floats: int, vcodec: str, root: Path | None = None) -> SpaceEstimate:
    """`cameras` {name: (height, width)}; `vector_floats` floats recorded per frame (state + action)."""
    pixels = sum(h * w for h, w in cameras.values())
    raw = pixels * 3 + vector_floats * 4 + 4
    measured = measured_encoded_bytes_per_frame(root) if root is not None else None
    if measured is not None:
        per_frame, episodes = measured
        return SpaceEstimate(raw, per_frame, f"measured over {episodes} committed episode(s)")
    bpp = ASSUMED_BITS_PER_PIXEL.get(vcodec, ASSUMED_BITS_PER_PIXEL_OTHER)
    encoded = pixels * bpp / 8 + (vector_floats + 5) * PARQUET_BYTES_PER_FLOAT
    return SpaceEstimate(raw, encoded, f"assumed {bpp} bits/pixel for {vcodec}")


def measured_encoded_bytes_per_frame(root: Path) -> tuple[float, int] | None:
    """(bytes of data/ + videos/ per committed frame, episodes) of the dataset at `root`, if it has frames."""
    try:
        info = fmt.read_json(Path(root) / fmt.INFO_PATH)
    except (FileNotFoundError, fmt.DatasetFormatError):
        return None
    frames = info.get("total_frames") or 0
    if frames <= 0:
        return None
    size = sum(p.stat().st_size for sub in ("data", "videos") for p in (Path(root) / sub).rglob("*") if p.is_file())
    if size <= 0:  # e.g. a v3.0 store whose episodes were packed away: nothing to measure here
        return None
    return size / frames, int(info.get("total_episodes") or 0)


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding `path` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def megabytes(n: float) -> str:
    return f"{n / 1e6:.0f} MB" if n >= 10e6 else f"{n / 1e6:.1f} MB"


def check_free_space(
    root: Path | str,
    cameras: dict[str, tuple[int, int]],
    fps: int,
    episode_time_s: float,
    vcodec: str = fmt.DEFAULT_VIDEO_CODEC,
    vector_floats: int = 12,
    episodes: int = PREFLIGHT_EPISODES,
) -> SpaceEstimate:
    """Before recording: raise InsufficientSpaceError (one line) unless `root` holds `episodes` more episodes.

    Episodes may pile up in the save queue, so each is counted at its peak (raw spool + encoded),
    plus the writer's SpaceReserve.
    """
    est = estimate(cameras, vector_floats, vcodec, Path(root))
    frames = max(1, round(episode_time_s * fps))
    needed = episodes * est.episode_peak_bytes(frames) + reserve_bytes(est, fps)
    free = free_bytes(Path(root))
    if free < needed:
        raise InsufficientSpaceError(
            f"not enough free space at {root}: {megabytes(free)} free, {megabytes(needed)} needed for {episodes} episodes "
            f"of {episode_time_s:g} s at {fps} fps with {len(cameras)} camera(s) ({est.how}); free space or choose "
            f"another --record.root"
        )
    return est


RESERVE_SECONDS = 3.0  # of raw frames: what is still in flight when a full disk stops recording
RESERVE_FILE = "reserve.bin"  # in the spool directory, while a dataset is open for recording


def reserve_bytes(est: SpaceEstimate, fps: int) -> int:
    return int(est.raw_bytes_per_frame * fps * RESERVE_SECONDS)


class SpaceReserve:
    """Disk space set aside while recording, given back when the disk fills up.

    Why: when a write fails for lack of space, the frames already on their way (queues,
    the seconds until the recorder hears that it must stop) still have to land somewhere.
    Releasing the reserve lets them into the spool, so a full disk costs no frame.
    """

    def __init__(self, path: Path, size: int):
        self.path, self.size = path, int(size)
        self.released = False

    def ensure(self) -> None:
        """Allocate the reserve (best effort: with too little space there is none, and no error)."""
        if self.released or (self.path.exists() and self.path.stat().st_size >= self.size):
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "wb") as f:
                os.posix_fallocate(f.fileno(), 0, self.size)
        except OSError:
            self.path.unlink(missing_ok=True)

    def release(self) -> bool:
        """Free the reserve; True if there was one to free."""
        had = self.path.exists() and not self.released
        self.released = True
        self.path.unlink(missing_ok=True)
        return had
