"""The Arrow message contract of the recording dataflow (DESIGN.md "Messages"), in one module.

Every node encodes what it sends and decodes what it receives here, so a field
name or a layout cannot drift between sender and receiver. Decoders validate and
raise `MessageError` with one clear reason; callers count the rejection and go on,
a malformed message never crashes a node.

Streams:
  image    flat uint8 [h*w*3]; metadata encoding (rgb8|bgr8), width, height, seq, stamp_ns
  joint    float32 [n];        metadata names, seq, stamp_ns
  key      one-element string array, one of KEYS
  episode  recorder -> saver, one ordered stream: kind begin|frame|end|discard|finish,
           seq, episode_index; a frame carries frame_index and the payload
           state | action | image per camera, concatenated as bytes; `end` carries
           timing_* (how the episode was sampled). At most DORA_MESSAGE_LIMIT bytes.
  status   one-element string array holding a JSON object with exactly the fields of
           RecorderStatus or SaverStatus; the saver's `handled_seq` acknowledges the
           episode stream (the recorder's credits and finish hand-over)
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pyarrow as pa

IMAGE_ENCODINGS = ("rgb8", "bgr8")
EPISODE_KINDS = ("begin", "frame", "end", "discard", "finish")
DORA_MESSAGE_LIMIT = 64 * 1024 * 1024  # dora 1.1's daemon transport limit per message
METADATA_ALLOWANCE = 64 * 1024  # room kept for a message's metadata and IPC framing


class MessageError(ValueError):
    """A received message breaks the contract; the text says which field and how."""


# --------------------------------------------------------------------------- helpers


def _require(metadata: dict | None, key: str, kind: type | tuple[type, ...], stream: str) -> Any:
    if metadata is None or key not in metadata:
        raise MessageError(f"{stream}: metadata `{key}` missing")
    value = metadata[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise MessageError(f"{stream}: metadata `{key}` has type {type(value).__name__}, expected {kind}")
    return value


def _as_numpy(value: Any, dtype: np.dtype, stream: str) -> np.ndarray:
    """Zero-copy view of a flat Arrow array of exactly `dtype`."""
    if not isinstance(value, pa.Array):
        raise MessageError(f"{stream}: payload is {type(value).__name__}, expected an Arrow array")
    if value.type != pa.from_numpy_dtype(dtype):
        raise MessageError(f"{stream}: payload dtype {value.type}, expected {np.dtype(dtype).name}")
    if value.null_count:
        raise MessageError(f"{stream}: payload has {value.null_count} null values")
    return value.to_numpy(zero_copy_only=True)


# --------------------------------------------------------------------------- image


@dataclass(frozen=True)
class ImageMsg:
    frame: np.ndarray  # (height, width, 3) uint8, always RGB after decoding
    seq: int
    stamp_ns: int


def encode_image(frame: np.ndarray, seq: int, stamp_ns: int, encoding: str = "rgb8") -> tuple[pa.Array, dict]:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise MessageError(f"image: frame must be (h, w, 3) uint8, got {frame.shape} {frame.dtype}")
    height, width = frame.shape[:2]
    metadata = {"encoding": encoding, "width": int(width), "height": int(height), "seq": int(seq), "stamp_ns": int(stamp_ns)}
    return pa.array(np.ascontiguousarray(frame).reshape(-1)), metadata


def decode_image(value: Any, metadata: dict | None) -> ImageMsg:
    encoding = _require(metadata, "encoding", str, "image")
    if encoding not in IMAGE_ENCODINGS:
        raise MessageError(f"image: encoding {encoding!r} unsupported (expected one of {IMAGE_ENCODINGS})")
    width = _require(metadata, "width", int, "image")
    height = _require(metadata, "height", int, "image")
    seq = _require(metadata, "seq", int, "image")
    stamp_ns = _require(metadata, "stamp_ns", int, "image")
    if width <= 0 or height <= 0:
        raise MessageError(f"image: width/height must be positive, got {width}x{height}")
    flat = _as_numpy(value, np.uint8, "image")
    if flat.size != width * height * 3:
        raise MessageError(f"image: {flat.size} bytes, expected width*height*3 = {width}*{height}*3 = {width * height * 3}")
    frame = flat.reshape(height, width, 3)
    if encoding == "bgr8":
        frame = frame[:, :, ::-1]
    return ImageMsg(frame=frame, seq=seq, stamp_ns=stamp_ns)


# --------------------------------------------------------------------------- joint


@dataclass(frozen=True)
class JointMsg:
    positions: np.ndarray  # float32, degrees; gripper 0-100
    names: list[str]
    seq: int
    stamp_ns: int


def encode_joint(positions: np.ndarray, names: list[str], seq: int, stamp_ns: int) -> tuple[pa.Array, dict]:
    positions = np.asarray(positions, dtype=np.float32).reshape(-1)
    if positions.size != len(names):
        raise MessageError(f"joint: {positions.size} positions for {len(names)} names")
    return pa.array(positions), {"names": list(names), "seq": int(seq), "stamp_ns": int(stamp_ns)}


def decode_joint(value: Any, metadata: dict | None, expected_names: list[str] | None = None) -> JointMsg:
    names = _require(metadata, "names", list, "joint")
    seq = _require(metadata, "seq", int, "joint")
    stamp_ns = _require(metadata, "stamp_ns", int, "joint")
    positions = _as_numpy(value, np.float32, "joint")
    if positions.size != len(names):
        raise MessageError(f"joint: {positions.size} positions for {len(names)} names {names}")
    if expected_names is not None and list(names) != list(expected_names):
        raise MessageError(f"joint: names {names} differ from the expected {expected_names}")
    if not np.all(np.isfinite(positions)):
        raise MessageError("joint: positions contain NaN or infinity")
    return JointMsg(positions=positions, names=list(names), seq=seq, stamp_ns=stamp_ns)


# --------------------------------------------------------------------------- key

# The keys the operator presses; the keyboard node sends them, the recorder acts on them.
KEYS = {"n": "end episode and save", "r": "re-record (discard episode)", "p": "proceed from reset", "e": "exit"}


def encode_key(key: str) -> pa.Array:
    return pa.array([key])


def decode_key(value: Any) -> str:
    if not isinstance(value, pa.Array) or value.type not in (pa.string(), pa.large_string()) or len(value) != 1:
        raise MessageError(f"key: expected a one-element string array, got {getattr(value, 'type', type(value).__name__)}")
    key = value[0].as_py()
    if not key:
        raise MessageError("key: empty string")
    return key


# --------------------------------------------------------------------------- status


@dataclass
class RecorderStatus:
    """The recorder's status: where the session is, and what it recorded, sent and skipped."""

    phase: str = "starting"
    episode: int = 0  # session episode number, 0-based
    num_episodes: int = 0
    frame: int = 0
    episode_frames: int = 0
    episodes_recorded: int = 0
    episodes_saved: int = 0  # the saver's own figure
    episodes_discarded: int = 0
    slow_episodes: int = 0
    frames_sent: int = 0
    frames_kept: int = 0  # frames of episodes ended with `end` (to compare with what is committed)
    frames_handed_over: int = 0  # the saver's figures, as last heard
    frames_committed: int = 0
    in_flight: int = 0
    outbox: int = 0
    stale_skips: int = 0
    backpressure_skips: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    input_gaps: dict[str, int] = field(default_factory=dict)
    staleness: dict[str, dict] = field(default_factory=dict)
    save_response_ms: list[float] = field(default_factory=list)  # the last SAVE_RESPONSE_WINDOW episodes
    save_response_count: int = 0
    save_response_max_ms: float = 0.0
    send_max_ms: float = 0.0
    sample_gap_max_ms: float = 0.0
    episode_seq: int = 0
    stamp_ns: int = 0


SAVE_RESPONSE_WINDOW = 100  # save response times kept (and republished): the most recent episodes'


@dataclass
class SaverStatus:
    """The saver's status; `handled_seq` acknowledges the episode stream (the recorder's credits)."""

    queue_depth: int = 0
    pending: int = 0
    queued: int = 0
    completed: int = 0
    failed: int = 0
    retries: int = 0
    last_error: str | None = None
    fatal: str | None = None  # nothing more can be saved: recording stops
    free_bytes: int | None = None
    minutes_left: float | None = None
    space_low: bool = False
    frames_recoverable: int = 0
    recoverable: list[str] = field(default_factory=list)
    frames_received: int = 0
    frames_committed: int = 0
    frames_discarded: int = 0
    frames_partial: int = 0
    frames_failed: int = 0
    frames_kept_in_spool: int = 0
    pack_error: str | None = None
    frames_from_stop_note: int = 0
    episodes_committed: int = 0
    episodes_discarded: int = 0
    sequence_gaps: int = 0
    duplicates: int = 0
    reordered: int = 0
    handled_seq: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    draining: bool = False
    done: bool = False
    root: str | None = None


Status = RecorderStatus | SaverStatus


def encode_status(status: Status) -> pa.Array:
    return pa.array([json.dumps(asdict(status))])


def decode_status(value: Any, kind: type[Status]) -> Status:
    """The record `kind` from a status message; a missing, unknown or mistyped field is a MessageError."""
    try:
        raw = json.loads(decode_key(value))
    except (MessageError, json.JSONDecodeError) as exc:
        raise MessageError(f"status: not a JSON object in a one-element string array ({exc})") from exc
    if not isinstance(raw, dict):
        raise MessageError(f"status: JSON is a {type(raw).__name__}, expected an object")
    name = kind.__name__
    expected = {f.name: f for f in fields(kind)}
    if unknown := sorted(set(raw) - set(expected)):
        raise MessageError(f"status: {name} has no field {', '.join(unknown)}")
    if missing := sorted(set(expected) - set(raw)):
        raise MessageError(f"status: {name} field {', '.join(missing)} missing")
    for key, value in raw.items():
        want = _json_type(expected[key])
        if value is not None and want is not None and (isinstance(value, bool) != (want is bool) or not isinstance(value, want)):
            raise MessageError(f"status: {name}.{key} is {type(value).__name__} {value!r}, expected {want}")
    return kind(**raw)


def _json_type(f) -> type | tuple[type, ...] | None:
    """What JSON gives for a field, from its default (None: any)."""
    default = f.default_factory() if f.default_factory is not MISSING else f.default
    if isinstance(default, bool):
        return bool
    if isinstance(default, float):
        return (int, float)
    return type(default) if default is not None else None


# --------------------------------------------------------------------------- episode stream


@dataclass(frozen=True)
class EpisodeLayout:
    """What a frame payload holds, announced by `begin` and repeated in each frame's metadata."""

    joint_names: list[str]
    cameras: dict[str, tuple[int, int]]  # name -> (height, width), in payload order

    @property
    def nbytes(self) -> int:
        return 2 * 4 * len(self.joint_names) + sum(h * w * 3 for h, w in self.cameras.values())

    def to_metadata(self) -> dict:
        return {
            "joint_names": list(self.joint_names),
            "cameras": list(self.cameras),
            "camera_shapes": [int(v) for hw in self.cameras.values() for v in hw],
        }

    @classmethod
    def from_metadata(cls, metadata: dict) -> "EpisodeLayout":
        names = _require(metadata, "joint_names", list, "episode")
        cameras = _require(metadata, "cameras", list, "episode")
        shapes = _require(metadata, "camera_shapes", list, "episode")
        if not names:
            raise MessageError("episode: metadata `joint_names` is empty")
        if len(shapes) != 2 * len(cameras) or not all(isinstance(v, int) and v > 0 for v in shapes):
            raise MessageError(f"episode: `camera_shapes` {shapes} must hold (height, width) > 0 for each of {cameras}")
        return cls(list(names), {cam: (shapes[2 * i], shapes[2 * i + 1]) for i, cam in enumerate(cameras)})


@dataclass(frozen=True)
class EpisodeMsg:
    kind: str
    seq: int
    episode_index: int
    frame_index: int = -1
    task: str = ""
    layout: EpisodeLayout | None = None
    state: np.ndarray | None = None
    action: np.ndarray | None = None
    images: dict[str, np.ndarray] = field(default_factory=dict)
    timing: dict = field(default_factory=dict)  # `end`: how the episode was sampled (see timing.py)


TIMING_PREFIX = "timing_"


def encode_episode_control(kind: str, seq: int, episode_index: int, task: str = "",
                           layout: EpisodeLayout | None = None, timing: dict | None = None) -> tuple[pa.Array, dict]:
    if kind not in EPISODE_KINDS or kind == "frame":
        raise MessageError(f"episode: control kind {kind!r} unknown")
    metadata = {"kind": kind, "seq": int(seq), "episode_index": int(episode_index)}
    metadata.update({TIMING_PREFIX + k: v for k, v in (timing or {}).items()})
    if kind == "begin":
        if layout is None:
            raise MessageError("episode: begin needs the frame layout")
        metadata.update(task=task, **layout.to_metadata())
    return pa.array([], type=pa.uint8()), metadata


def encode_episode_frame(seq: int, episode_index: int, frame_index: int, layout: EpisodeLayout,
                         state: np.ndarray, action: np.ndarray, images: dict[str, np.ndarray],
                         stamp_ns: int) -> tuple[pa.Array, dict]:
    parts = [np.asarray(state, np.float32).view(np.uint8).reshape(-1), np.asarray(action, np.float32).view(np.uint8).reshape(-1)]
    parts += [np.asarray(images[cam], np.uint8).reshape(-1) for cam in layout.cameras]
    payload = np.concatenate(parts)
    if payload.size != layout.nbytes:
        raise MessageError(f"episode: frame payload is {payload.size} bytes, layout needs {layout.nbytes}")
    metadata = {"kind": "frame", "seq": int(seq), "episode_index": int(episode_index),
                "frame_index": int(frame_index), "stamp_ns": int(stamp_ns), **layout.to_metadata()}
    return pa.array(payload), metadata


def decode_episode(value: Any, metadata: dict | None) -> EpisodeMsg:
    kind = _require(metadata, "kind", str, "episode")
    if kind not in EPISODE_KINDS:
        raise MessageError(f"episode: kind {kind!r} unknown (expected one of {EPISODE_KINDS})")
    seq = _require(metadata, "seq", int, "episode")
    episode_index = _require(metadata, "episode_index", int, "episode")
    if kind == "begin":
        return EpisodeMsg(kind, seq, episode_index, task=_require(metadata, "task", str, "episode"),
                          layout=EpisodeLayout.from_metadata(metadata))
    if kind != "frame":
        timing = {k[len(TIMING_PREFIX):]: v for k, v in metadata.items() if k.startswith(TIMING_PREFIX)}
        return EpisodeMsg(kind, seq, episode_index, timing=timing)
    frame_index = _require(metadata, "frame_index", int, "episode")
    layout = EpisodeLayout.from_metadata(metadata)
    payload = _as_numpy(value, np.uint8, "episode")
    if payload.size != layout.nbytes:
        raise MessageError(f"episode: frame {frame_index} payload is {payload.size} bytes, layout needs {layout.nbytes}")
    n = len(layout.joint_names)
    state = payload[: 4 * n].view(np.float32)
    action = payload[4 * n: 8 * n].view(np.float32)
    images, offset = {}, 8 * n
    for cam, (h, w) in layout.cameras.items():
        images[cam] = payload[offset: offset + h * w * 3].reshape(h, w, 3)
        offset += h * w * 3
    return EpisodeMsg(kind, seq, episode_index, frame_index=frame_index, layout=layout,
                      state=state, action=action, images=images)


class SeqTracker:
    """Counts messages lost on a stream: every sender numbers its messages 1, 2, 3, ..."""

    def __init__(self) -> None:
        self.last = 0
        self.gaps = 0

    def see(self, seq: int) -> bool:
        """Record `seq`; False when it is not newer than what was seen (a duplicate or a late message)."""
        if seq <= self.last:
            return False
        self.gaps += seq - self.last - 1
        self.last = seq
        return True


class InOrder:
    """Puts a numbered stream (1, 2, 3, ...) back in order before it is handled.

    A duplicate is dropped; a message that overtook others waits (at most `window`
    messages, or until `give_up()`) for the ones before it; what never comes is a gap.
    Each is counted under its own name, so a swap is not reported as a loss.
    """

    def __init__(self, window: int = 16):
        self.window = window
        self.next_seq = 1
        self.held: dict[int, Any] = {}
        self.duplicates = 0
        self.reordered = 0
        self.gaps = 0

    @property
    def handled(self) -> int:
        """Every message up to this number was released (or counted as a gap)."""
        return self.next_seq - 1

    def push(self, seq: int, item: Any) -> list[Any]:
        """Accept one message; returns the messages now due, in order."""
        if seq < self.next_seq or seq in self.held:
            self.duplicates += 1
            return []
        if seq > self.next_seq:
            self.held[seq] = item
            return self._skip_to(min(self.held)) if len(self.held) > self.window else []
        if self.held:
            self.reordered += 1  # it arrived after a message that follows it
        self.held[seq] = item
        return self._release()

    def give_up(self) -> list[Any]:
        """The missing messages will not come (stream ended or waited long enough): release the rest."""
        out = []
        while self.held:
            out += self._skip_to(min(self.held))
        return out

    def _skip_to(self, seq: int) -> list[Any]:
        self.gaps += seq - self.next_seq
        self.next_seq = seq
        return self._release()

    def _release(self) -> list[Any]:
        out = []
        while self.next_seq in self.held:
            out.append(self.held.pop(self.next_seq))
            self.next_seq += 1
        return out
