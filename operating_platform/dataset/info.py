"""meta/info.json as one typed value, shared by the writer, the readers and the validators.

Why: info.json was a raw dict that the writer, the v3.0 packer, the training reader, the
preflight and two validators each read their own way, so the rules drifted (which features
are parquet columns was written four ways). `DatasetInfo` is parsed once and strictly: a
wrong or missing field is one DatasetFormatError naming the file and the field. `to_json()`
writes exactly the keys LeRobot's reader of that version demands, in the order our writers
have always written them (see ../shared/DESIGN.md, "The dataset"). The value is immutable:
a commit builds the next one (`with_totals`) and adopts it once it is on disk.

Path templates are formatted by the format modules only (format.py for v2.1, v30/layout.py
for v3.0), through `data_path()` / `video_path()` here, with the template the dataset holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from . import format as fmt
from .v30 import layout

_NULL = type(None)
_NUMBER = (int, float)

# Every field of info.json per version: its JSON types, in the order it is written.
V21_FIELDS: dict[str, tuple[type, ...]] = {
    "codebase_version": (str,),
    "robot_type": (str, _NULL),
    "total_episodes": (int,),
    "total_frames": (int,),
    "total_tasks": (int,),
    "total_videos": (int,),
    "total_chunks": (int,),
    "chunks_size": (int,),
    "fps": (int,),
    "splits": (dict,),
    "data_path": (str,),
    "video_path": (str, _NULL),
    "features": (dict,),
}
V30_FIELDS: dict[str, tuple[type, ...]] = {
    **{k: t for k, t in V21_FIELDS.items() if k not in ("total_videos", "total_chunks")},
    "data_files_size_in_mb": _NUMBER,
    "video_files_size_in_mb": _NUMBER,
}
FIELDS = {fmt.CODEBASE_VERSION: V21_FIELDS, fmt.V30: V30_FIELDS}
_POSITIVE = ("fps", "chunks_size", "data_files_size_in_mb", "video_files_size_in_mb")
_NON_NEGATIVE = ("total_episodes", "total_frames", "total_tasks", "total_videos", "total_chunks")

# Feature dtypes with no parquet column: video frames live in the mp4s; image features (which
# LeRobot embeds in its parquet) are not recorded by this platform, nor checked as columns.
_NOT_COLUMNS = ("video", "image")


def is_json_type(value: Any, types: tuple[type, ...]) -> bool:
    """isinstance, but a JSON true/false is not a number (Python says it is)."""
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def type_problems(obj: dict, spec: Mapping[str, tuple[type, ...]], where: str) -> list[str]:
    """Every field of `spec` missing from `obj` or not of one of its JSON types."""
    problems = []
    for key, types in spec.items():
        if key not in obj:
            problems.append(f"{where}: field '{key}' missing")
        elif not is_json_type(obj[key], types):
            names = "/".join("null" if t is _NULL else t.__name__ for t in types)
            problems.append(f"{where}: field '{key}' is {obj[key]!r} ({type(obj[key]).__name__}), expected {names}")
    return problems


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class Feature:
    """One entry of info.json `features`. `info` is a video's block (codec, pix_fmt, ...), absent
    until the first video is encoded; `extra` keeps keys written by others, as read."""

    dtype: str
    shape: tuple[int, ...]
    names: Any = None  # a list, LeRobot's {"motors": [...]}, or None
    info: dict | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, key: str, raw: Any, where: str = fmt.INFO_PATH) -> "Feature":
        problems = feature_problems(key, raw, where)
        if problems:
            raise fmt.DatasetFormatError(problems[0])
        known = ("dtype", "shape", "names", "info")
        return cls(raw["dtype"], tuple(raw["shape"]), raw.get("names"), raw.get("info"),
                   {k: v for k, v in raw.items() if k not in known})

    def to_json(self) -> dict:
        out = {"dtype": self.dtype, "shape": list(self.shape), "names": self.names}
        if self.info is not None:
            out["info"] = dict(self.info)
        return {**out, **self.extra}

    @property
    def is_video(self) -> bool:
        return self.dtype == "video"

    @property
    def is_parquet_column(self) -> bool:
        """The one rule for which features are columns of the data parquet (both versions)."""
        return self.dtype not in _NOT_COLUMNS

    @property
    def has_stats(self) -> bool:
        """Every non-string feature has min/max/mean/std/count stats (images per channel)."""
        return self.dtype != "string"

    @property
    def width(self) -> int:
        """Values per frame (the shape flattened)."""
        return int(np.prod(self.shape))

    @property
    def signature(self) -> tuple:
        """What must match to append to a dataset: dtype, shape, names (not the video `info` block)."""
        names = self.names
        if isinstance(names, dict):
            names = tuple((k, tuple(v)) for k, v in names.items())
        elif names is not None:
            names = tuple(names)
        return (self.dtype, self.shape, names)


def feature_problems(key: str, raw: Any, where: str = fmt.INFO_PATH) -> list[str]:
    """Why `raw` is not a feature LeRobot can read (empty when it is)."""
    at = f"{where}: feature '{key}'"
    if not isinstance(raw, dict) or not isinstance(raw.get("dtype"), str):
        return [f"{at} has no 'dtype'"]
    shape = raw.get("shape")
    if not (isinstance(shape, (list, tuple)) and shape and all(is_json_type(d, (int,)) and d > 0 for d in shape)):
        return [f"{at}: shape {shape!r} is not a list of positive integers"]
    problems = []
    if not is_json_type(raw.get("names"), (list, dict, _NULL)):
        problems.append(f"{at}: names {raw['names']!r} is not a list, an object or null")
    if not is_json_type(raw.get("info"), (dict, _NULL)):
        problems.append(f"{at}: info {raw['info']!r} is not an object")
    return problems


def features_from_json(raw: Any, where: str = fmt.INFO_PATH) -> dict[str, Feature]:
    """Typed features from info.json `features` (or what `create` is given); the first problem raises."""
    if not isinstance(raw, Mapping) or not raw:
        raise fmt.DatasetFormatError(f"{where}: 'features' is missing or empty")
    return {k: v if isinstance(v, Feature) else Feature.from_json(k, v, where) for k, v in raw.items()}


def video_keys(features: Mapping[str, Feature]) -> list[str]:
    return [k for k, ft in features.items() if ft.is_video]


def parquet_columns(features: Mapping[str, Feature]) -> list[str]:
    """The data parquet's columns, in the features' order."""
    return [k for k, ft in features.items() if ft.is_parquet_column]


def stats_keys(features: Mapping[str, Feature]) -> list[str]:
    return [k for k, ft in features.items() if ft.has_stats]


def vector_keys(features: Mapping[str, Feature]) -> list[str]:
    """User-provided numeric columns (action, state, ...): columns but the bookkeeping and strings."""
    return [k for k, ft in features.items()
            if ft.is_parquet_column and ft.dtype != "string" and k not in fmt.DEFAULT_FEATURES]


def feature_signature(features: Mapping[str, Feature]) -> dict[str, tuple]:
    return {k: ft.signature for k, ft in features.items()}


# --------------------------------------------------------------------------- info.json


def field_problems(raw: Any, where: str = fmt.INFO_PATH, version: str | None = None) -> list[str]:
    """Every top-level field of info.json that is missing, of a wrong JSON type or out of range,
    for `version` (default: the one the file names). Features are `feature_problems`' part."""
    if not isinstance(raw, dict):
        return [f"{where}: top level is {type(raw).__name__}, expected an object"]
    have = raw.get("codebase_version")
    if version is None:
        if have not in FIELDS:
            return [f"{where}: codebase_version {have!r} is not a supported LeRobot format "
                    f"(choose one of {', '.join(fmt.CODEBASE_VERSIONS)})"]
        version = have
    if isinstance(have, str) and have != version:  # then every other field is another version's
        return [f"{where}: codebase_version is {have!r}, expected {version!r}"]
    spec = FIELDS[version]
    problems = type_problems(raw, spec, where)
    for key in (k for k in spec if k in raw and is_json_type(raw[k], spec[k])):
        if key in _POSITIVE and raw[key] <= 0:
            problems.append(f"{where}: {key} is {raw[key]}, expected > 0")
        elif key in _NON_NEGATIVE and raw[key] < 0:
            problems.append(f"{where}: {key} is {raw[key]}, expected >= 0")
    return problems


@dataclass(frozen=True)
class DatasetInfo:
    """meta/info.json of a LeRobot v2.1 or v3.0 dataset. Fields of one version only are None in the other."""

    codebase_version: str
    fps: int
    features: dict[str, Feature]
    robot_type: str | None
    chunks_size: int
    data_path_template: str
    video_path_template: str | None
    total_episodes: int = 0
    total_frames: int = 0
    total_tasks: int = 0
    splits: dict = field(default_factory=dict)
    total_videos: int | None = None  # v2.1
    total_chunks: int | None = None  # v2.1
    data_files_size_in_mb: float | None = None  # v3.0
    video_files_size_in_mb: float | None = None  # v3.0
    extra: dict = field(default_factory=dict)  # keys written by others, kept as read

    # ------------------------------------------------------------------ making one

    @classmethod
    def new(cls, codebase_version: str, fps: int, features: Mapping, robot_type: str | None,
            chunks_size: int = fmt.DEFAULT_CHUNK_SIZE,
            data_files_size_in_mb: float = layout.DEFAULT_DATA_FILE_SIZE_IN_MB,
            video_files_size_in_mb: float = layout.DEFAULT_VIDEO_FILE_SIZE_IN_MB) -> "DatasetInfo":
        """An empty dataset's info (`features` typed or as JSON)."""
        fmt.check_codebase_version(codebase_version, "codebase_version")
        features = features_from_json(features, "features")
        v30 = codebase_version == fmt.V30
        data_path, video_path = (layout.DATA_PATH, layout.VIDEO_PATH) if v30 else (fmt.DATA_PATH, fmt.VIDEO_PATH)
        info = cls(codebase_version, int(fps), features, robot_type, chunks_size, data_path,
                   video_path if video_keys(features) else None)
        if v30:
            return replace(info, data_files_size_in_mb=data_files_size_in_mb,
                           video_files_size_in_mb=video_files_size_in_mb)
        return replace(info, total_videos=0, total_chunks=0)

    @classmethod
    def load(cls, root: Path | str, version: str | None = None) -> "DatasetInfo":
        """`root`/meta/info.json; DatasetFormatError naming the file and the field at fault."""
        path = Path(root) / fmt.INFO_PATH
        if not path.exists():
            raise fmt.DatasetFormatError(f"{path}: missing (not a LeRobot dataset root?)")
        return cls.from_json(fmt.read_json(path), str(path), version)

    @classmethod
    def from_json(cls, raw: Any, where: str = fmt.INFO_PATH, version: str | None = None) -> "DatasetInfo":
        """Parse info.json content; `version`, when given, is the one the dataset must be in."""
        problems = field_problems(raw, where, version)
        if problems:
            raise fmt.DatasetFormatError(problems[0])
        features = features_from_json(raw["features"], where)
        fields = FIELDS[raw["codebase_version"]]
        if video_keys(features) and raw["video_path"] is None:
            raise fmt.DatasetFormatError(f"{where}: field 'video_path' is null, but the dataset has video features")
        return cls(
            codebase_version=raw["codebase_version"], fps=raw["fps"], features=features,
            robot_type=raw["robot_type"], chunks_size=raw["chunks_size"],
            data_path_template=raw["data_path"], video_path_template=raw["video_path"],
            total_episodes=raw["total_episodes"], total_frames=raw["total_frames"],
            total_tasks=raw["total_tasks"], splits=dict(raw["splits"]),
            total_videos=raw.get("total_videos"), total_chunks=raw.get("total_chunks"),
            data_files_size_in_mb=raw.get("data_files_size_in_mb"),
            video_files_size_in_mb=raw.get("video_files_size_in_mb"),
            extra={k: v for k, v in raw.items() if k not in fields},
        )

    def to_json(self) -> dict:
        """info.json content: the version's fields, in the order our writers write them."""
        values = {
            "codebase_version": self.codebase_version, "robot_type": self.robot_type,
            "total_episodes": self.total_episodes, "total_frames": self.total_frames,
            "total_tasks": self.total_tasks, "total_videos": self.total_videos,
            "total_chunks": self.total_chunks, "chunks_size": self.chunks_size, "fps": self.fps,
            "splits": dict(self.splits), "data_path": self.data_path_template,
            "video_path": self.video_path_template,
            "features": {k: ft.to_json() for k, ft in self.features.items()},
            "data_files_size_in_mb": self.data_files_size_in_mb,
            "video_files_size_in_mb": self.video_files_size_in_mb,
        }
        return {**{k: values[k] for k in FIELDS[self.codebase_version]}, **self.extra}

    def write(self, root: Path | str) -> None:
        """Atomically (and durably) replace `root`/meta/info.json: a commit point."""
        fmt.write_json_atomic(Path(root) / fmt.INFO_PATH, self.to_json())

    # ------------------------------------------------------------------ next values

    def with_totals(self, episodes: int, frames: int, tasks: int) -> "DatasetInfo":
        """The info of the dataset holding `episodes` episodes (splits and v2.1's counts follow)."""
        out = replace(self, total_episodes=episodes, total_frames=frames, total_tasks=tasks,
                      splits={"train": f"0:{episodes}"} if episodes else {})
        if self.codebase_version == fmt.V30:
            return out
        return replace(out, total_videos=episodes * len(self.video_keys),
                       total_chunks=math.ceil(episodes / self.chunks_size))

    def with_features(self, features: Mapping[str, Feature]) -> "DatasetInfo":
        return replace(self, features=dict(features))

    # ------------------------------------------------------------------ views

    @property
    def is_v30(self) -> bool:
        return self.codebase_version == fmt.V30

    @property
    def video_keys(self) -> list[str]:
        return video_keys(self.features)

    @property
    def vector_keys(self) -> list[str]:
        return vector_keys(self.features)

    @property
    def parquet_columns(self) -> list[str]:
        return parquet_columns(self.features)

    @property
    def stats_keys(self) -> list[str]:
        return stats_keys(self.features)

    # ------------------------------------------------------------------ paths (relative to the root)

    def data_path(self, episode: int | None = None, *, chunk: int | None = None, file: int | None = None) -> str:
        """v2.1: the parquet of `episode`; v3.0: the shared data file (`chunk`, `file`)."""
        if self.is_v30:
            _need(chunk is not None and file is not None and episode is None, "v3.0 data_path(chunk=, file=)")
            return layout.data_relpath(chunk, file, self.data_path_template)
        _need(episode is not None and chunk is None and file is None, "v2.1 data_path(episode)")
        return fmt.data_relpath(episode, self.chunks_size, self.data_path_template)

    def video_path(self, video_key: str, episode: int | None = None, *, chunk: int | None = None,
                   file: int | None = None) -> str:
        """v2.1: `video_key`'s mp4 of `episode`; v3.0: its shared mp4 (`chunk`, `file`)."""
        if self.video_path_template is None:
            raise fmt.DatasetFormatError(f"{fmt.INFO_PATH}: video_path is null, no video of {video_key!r}")
        if self.is_v30:
            _need(chunk is not None and file is not None and episode is None, "v3.0 video_path(key, chunk=, file=)")
            return layout.video_relpath(video_key, chunk, file, self.video_path_template)
        _need(episode is not None and chunk is None and file is None, "v2.1 video_path(key, episode)")
        return fmt.video_relpath(video_key, episode, self.chunks_size, self.video_path_template)


def _need(ok: bool, usage: str) -> None:
    if not ok:
        raise TypeError(f"call as {usage}")
