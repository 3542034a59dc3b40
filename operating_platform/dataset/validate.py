"""Check a dataset on disk against the LeRobot v2.1 contract, and optionally a reference dataset.

Why: LeRobot's reader fails late (at training time) and vaguely; a recording that
breaks the contract must be caught right after it is written, with the file and
field named. Every check is one named `Check` so tests (and CI) can assert exactly
which rule a corrupted dataset breaks. The deep checks decode every video frame.

Nothing here writes to the dataset: it is safe to run while no save is in progress.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import format as fmt
from .commit import committed_spools
from .info import (
    DatasetInfo, Feature, feature_problems, field_problems, is_json_type, parquet_columns, stats_keys, type_problems,
    video_keys,
)
from .parquet import ARROW_SCALARS, arrow_type
from .spool import ENDED_MARKER, load_spooled_episode, spooled_episode_dirs
from .video import VideoProbe, probe_video

# LeRobot's reader default (`tolerance_s`): a timestamp off the 1/fps grid by more is rejected.
TIMESTAMP_TOLERANCE_S = 1e-4

GROUP_DIRS = "directory structure"
GROUP_META = "metadata files"
GROUP_PARQUET = "parquet files"
GROUP_VIDEO = "video files"
GROUP_STATS = "episode stats"
GROUP_WORKING = "working files"
GROUP_ORDER = [GROUP_DIRS, GROUP_META, GROUP_PARQUET, GROUP_VIDEO, GROUP_STATS, GROUP_WORKING]

REPAIR_HINT = "left by an interrupted save? LeRobotDataset.open(root) rolls the dataset back to its last commit"
MAX_PROBLEMS_SHOWN = 5

_STATS_KEYS = ("min", "max", "mean", "std", "count")
_VIDEO_INFO_TYPES: dict[str, tuple[type, ...]] = {
    "video.fps": (int, float),
    "video.height": (int,),
    "video.width": (int,),
    "video.codec": (str,),
    "video.pix_fmt": (str,),
    "video.is_depth_map": (bool,),
    "has_audio": (bool,),
}


def run_guarded(add, step, group: str) -> None:
    """Run one check; a corruption no check foresaw still ends in a report (via `add`), never in a traceback."""
    try:
        step()
    except Exception as e:  # noqa: BLE001 - reported as a failed check naming the step
        add(f"{step.__name__}.error", group, "", [f"{step.__name__} could not finish: {type(e).__name__}: {e}"])


class DatasetPathError(ValueError):
    """The path given is not something that can be validated (not a directory, bad reference)."""


@dataclass
class Check:
    """One rule applied to the dataset. `details` name each offending (or, verbose, each checked) item."""

    name: str
    passed: bool
    message: str
    group: str
    details: list[str] = field(default_factory=list)
    warning: bool = False


@dataclass
class ValidationReport:
    target: Path
    reference: Path | None
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.warning]

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check named {name!r}; ran: {[c.name for c in self.checks]}")

    def to_dict(self) -> dict:
        counted = [c for c in self.checks if not c.warning]
        return {
            "target": str(self.target),
            "reference": str(self.reference) if self.reference else None,
            "passed": self.passed,
            "validations_passed": sum(c.passed for c in counted),
            "validations_total": len(counted),
            "warnings": len(self.warnings),
            "checks": [asdict(c) for c in self.checks],
        }

    def format_text(self, verbose: bool = False) -> str:
        lines = [f"Target:    {self.target}"]
        if self.reference:
            lines.append(f"Reference: {self.reference}")
        for group in GROUP_ORDER:
            checks = [c for c in self.checks if c.group == group]
            if not checks:
                continue
            lines += ["", f"Validating {group}..."]
            for c in checks:
                mark = "⚠" if c.warning else ("✓" if c.passed else "✗")
                lines.append(f"  {mark} {c.message}")
                shown = c.details if verbose else ([] if c.passed and not c.warning else c.details[1:MAX_PROBLEMS_SHOWN])
                lines += [f"      {d}" for d in shown]
                if not verbose and not c.passed and len(c.details) > MAX_PROBLEMS_SHOWN:
                    lines.append(f"      ... {len(c.details) - MAX_PROBLEMS_SHOWN} more (--verbose shows all)")
        counted = [c for c in self.checks if not c.warning]
        summary = f"Validations: {sum(c.passed for c in counted)}/{len(counted)} passed"
        if self.warnings:
            summary += f", {len(self.warnings)} warning(s)"
        lines += ["", summary]
        if self.passed:
            lines.append("✓ VALIDATION PASSED: Dataset format is compatible")
        else:
            lines.append(f"✗ VALIDATION FAILED: {len(self.failed)} check(s) failed: {', '.join(c.name for c in self.failed)}")
        return "\n".join(lines)


def validate_dataset(target: Path | str, reference: Path | str | None = None) -> ValidationReport:
    """Run every check on `target` (and the comparisons with `reference` if given).

    Raises DatasetPathError when `target`/`reference` is not a directory or the
    reference has no readable meta/info.json: there is nothing to compare against.
    """
    target = Path(target)
    if not target.is_dir():
        raise DatasetPathError(f"target {target} is not a directory")
    ref = _Reference.load(Path(reference)) if reference is not None else None
    validator = _Validator(target, ref)
    validator.run()
    return ValidationReport(target=target, reference=Path(reference) if reference is not None else None,
                            checks=validator.checks)


# --------------------------------------------------------------------------- reference


@dataclass
class _Reference:
    """The parts of a reference dataset the target is compared with."""

    root: Path
    info: dict
    schema: pa.Schema | None  # of its first episode parquet, if any
    cameras: set[str]

    @classmethod
    def load(cls, root: Path) -> "_Reference":
        if not root.is_dir():
            raise DatasetPathError(f"reference {root} is not a directory")
        info_path = root / fmt.INFO_PATH
        try:
            info = fmt.read_json(info_path)
        except (OSError, fmt.DatasetFormatError) as e:
            raise DatasetPathError(f"reference {root}: cannot read {fmt.INFO_PATH} ({e})") from e
        if not isinstance(info, dict) or not isinstance(info.get("features"), dict):
            raise DatasetPathError(f"reference {root}: {fmt.INFO_PATH} has no 'features' object")
        parquets = sorted((root / "data").rglob("*.parquet"))
        try:
            schema = pq.read_schema(parquets[0]) if parquets else None
        except Exception as e:  # noqa: BLE001 - any unreadable file makes the reference unusable
            raise DatasetPathError(f"reference {root}: cannot read {parquets[0]} ({e})") from e
        return cls(root=root, info=info, schema=schema, cameras=_camera_dirs(root))


def _camera_dirs(root: Path) -> set[str]:
    return {p.name for p in (root / "videos").glob("chunk-*/*") if p.is_dir()}


# --------------------------------------------------------------------------- the checks


@dataclass
class _Episode:
    index: int
    length: int  # from episodes.jsonl
    tasks: list
    table: pa.Table | None = None  # None when the parquet is missing or unreadable


class _Validator:
    def __init__(self, root: Path, reference: _Reference | None):
        self.root = root
        self.ref = reference
        self.checks: list[Check] = []
        self.info: dict | None = None
        self.features: dict[str, dict] = {}  # as in info.json, each checked by info.features
        self.typed: dict[str, Feature] = {}  # those well formed: what the parquet and video checks expect
        self.fps: int | None = None
        self.chunks_size = fmt.DEFAULT_CHUNK_SIZE
        self.episodes: list[_Episode] = []
        self.tasks: dict[int, str] = {}
        self.stats_rows: list[dict] = []

    # ---------------------------------------------------------------- plumbing

    def _add(self, name: str, group: str, ok_message: str, problems: list[str],
             details: list[str] | None = None) -> bool:
        """Record a check: passes iff `problems` is empty; the first problem is its message."""
        if problems:
            message = problems[0] if len(problems) == 1 else f"{problems[0]} (and {len(problems) - 1} more)"
            self.checks.append(Check(name, False, message, group, list(problems)))
        else:
            self.checks.append(Check(name, True, ok_message, group, list(details or [])))
        return not problems

    def _warn(self, name: str, group: str, message: str, details: list[str]) -> None:
        self.checks.append(Check(name, True, message, group, details, warning=True))

    def run(self) -> None:
        info_loaded = self.load_info()
        self.check_directories()
        if not info_loaded:
            self._guarded(self.check_working_files, GROUP_WORKING)
            return
        steps = [
            (self.check_info_fields, GROUP_META),
            (self.check_features, GROUP_META),
            (self.check_video_info_blocks, GROUP_META),
            (self.check_metadata_files, GROUP_META),
            (self.load_parquets, GROUP_PARQUET),
            (self.check_parquet_schema, GROUP_PARQUET),
            (self.check_episode_columns, GROUP_PARQUET),
            (self.check_totals, GROUP_META),
            (self.check_videos, GROUP_VIDEO),
            (self.check_stats, GROUP_STATS),
            (self.check_working_files, GROUP_WORKING),
        ]
        if self.ref is not None:
            steps.append((self.compare_with_reference, GROUP_META))
        for step, group in steps:
            self._guarded(step, group)

    def _guarded(self, step, group: str) -> None:
        run_guarded(self._add, step, group)

    @property
    def _numeric_features(self) -> list[str]:
        return stats_keys(self.typed)

    @property
    def _column_features(self) -> list[str]:
        return parquet_columns(self.typed)

    @property
    def _video_keys(self) -> list[str]:
        return video_keys(self.typed)

    # ---------------------------------------------------------------- directories

    def check_directories(self) -> None:
        # data/ and videos/ appear with the first committed episode: a dataset created (or crashed)
        # before that is still valid. Unless a readable info.json says so, all three are expected.
        has_data = self.info is None or self.info.get("total_episodes") != 0
        has_videos = self.info is None or has_data and bool(self._video_keys) or \
            self.ref is not None and (self.ref.root / "videos").is_dir()
        required = (["data"] if has_data else []) + ["meta"] + (["videos"] if has_videos else [])
        for name in required:
            ok = (self.root / name).is_dir()
            self._add(f"dir.{name}", GROUP_DIRS, f"Directory exists: {name}/",
                      [] if ok else [f"Directory missing: {name}/ (in {self.root})"])

    # ---------------------------------------------------------------- info.json

    def load_info(self) -> bool:
        path = self.root / fmt.INFO_PATH
        problem = None
        try:
            info = fmt.read_json(path)
            if not isinstance(info, dict):
                problem = f"{fmt.INFO_PATH}: top level is {type(info).__name__}, expected an object"
        except FileNotFoundError:
            problem = f"{fmt.INFO_PATH} missing (not a LeRobot dataset root?)"
        except (OSError, UnicodeDecodeError, fmt.DatasetFormatError) as e:
            problem = f"{fmt.INFO_PATH}: {e}"
        if problem:
            self._add("info.json", GROUP_META, "", [problem])
            return False
        self._add("info.json", GROUP_META, f"{fmt.INFO_PATH} is valid JSON", [])
        self.info = info
        features = info.get("features")
        self.features = features if isinstance(features, dict) else {}
        self.typed = {k: Feature.from_json(k, ft) for k, ft in self.features.items() if not feature_problems(k, ft)}
        fps = info.get("fps")
        self.fps = fps if _is_int(fps) and fps > 0 else None
        if _is_int(info.get("chunks_size")) and info["chunks_size"] > 0:
            self.chunks_size = info["chunks_size"]
        return True

    def check_info_fields(self) -> None:
        info = self.info
        problems = field_problems(info, fmt.INFO_PATH, fmt.CODEBASE_VERSION)
        if "data_path" in info and info["data_path"] != fmt.DATA_PATH:
            problems.append(f"{fmt.INFO_PATH}: data_path is {info['data_path']!r}, expected {fmt.DATA_PATH!r}")
        if self._video_keys and info.get("video_path") != fmt.VIDEO_PATH:
            problems.append(f"{fmt.INFO_PATH}: video_path is {info.get('video_path')!r}, expected {fmt.VIDEO_PATH!r}")
        total = info.get("total_episodes")
        if _is_int(total) and isinstance(info.get("splits"), dict):
            want = {"train": f"0:{total}"}
            if info["splits"] != want and not (total == 0 and info["splits"] == {}):
                problems.append(f"{fmt.INFO_PATH}: splits is {info['splits']!r}, expected {want!r}")
        self._add("info.fields", GROUP_META,
                  f"info.json has every required field ({fmt.CODEBASE_VERSION}, fps={info.get('fps')})", problems)

    def check_features(self) -> None:
        problems = []
        if not self.features:
            problems.append(f"{fmt.INFO_PATH}: 'features' is missing or empty")
        for key, ft in self.features.items():
            where = f"{fmt.INFO_PATH}: feature '{key}'"
            if key not in self.typed:
                problems += feature_problems(key, ft)
                continue
            shape = ft.get("shape")
            if "names" not in ft:
                problems.append(f"{where} has no 'names'")
            dtype = ft["dtype"]
            if dtype == "video":
                if len(shape) != 3 or shape[2] != 3:
                    problems.append(f"{where}: video shape {shape}, expected [height, width, 3]")
                if ft.get("names") != ["height", "width", "channels"]:
                    problems.append(f"{where}: names {ft.get('names')!r}, expected ['height', 'width', 'channels']")
            elif dtype not in ARROW_SCALARS and dtype != "image":
                problems.append(f"{where}: dtype {dtype!r} is not one LeRobot stores")
        for key, want in fmt.DEFAULT_FEATURES.items():
            ft = self.features.get(key)
            if not isinstance(ft, dict):
                problems.append(f"{fmt.INFO_PATH}: feature '{key}' missing")
            elif (ft.get("dtype"), ft.get("shape")) != (want["dtype"], want["shape"]):
                problems.append(f"{fmt.INFO_PATH}: feature '{key}' is {ft.get('dtype')} {ft.get('shape')}, "
                                f"expected {want['dtype']} {want['shape']}")
        for key in (fmt.ACTION_KEY, fmt.STATE_KEY):
            ft = self.features.get(key)
            if not isinstance(ft, dict):
                problems.append(f"{fmt.INFO_PATH}: feature '{key}' missing")
                continue
            shape, names = ft.get("shape"), ft.get("names")
            if ft.get("dtype") != "float32" or not (isinstance(shape, list) and len(shape) == 1):
                problems.append(f"{fmt.INFO_PATH}: feature '{key}' is {ft.get('dtype')} {shape}, expected float32 [n]")
            elif not (isinstance(names, list) and len(names) == shape[0] and all(isinstance(n, str) for n in names)):
                problems.append(f"{fmt.INFO_PATH}: feature '{key}' names {names!r} are not {shape[0]} joint names")
        cams = self._video_keys
        self._add("info.features", GROUP_META,
                  f"info.json features valid ({len(self.features)} features, {len(cams)} camera(s))", problems)

    def check_video_info_blocks(self) -> None:
        """The per-camera `info` block must exist and agree with the feature; the files are probed later."""
        if not self._video_keys:
            return
        problems = []
        for key in self._video_keys:
            block = self.features[key].get("info")
            where = f"{fmt.INFO_PATH}: feature '{key}' info"
            if block is None and self.info.get("total_episodes") == 0:
                continue  # written from the first encoded video; none yet
            if not isinstance(block, dict):
                problems.append(f"{where} block missing")
                continue
            problems += type_problems(block, _VIDEO_INFO_TYPES, where)
            shape = self.features[key].get("shape")
            if isinstance(shape, list) and len(shape) == 3:
                if (block.get("video.height"), block.get("video.width")) != (shape[0], shape[1]):
                    problems.append(f"{where}: {block.get('video.height')}x{block.get('video.width')} (h x w) "
                                    f"differs from shape {shape}")
            if self.fps is not None and is_json_type(block.get("video.fps"), (int, float)) and \
                    not math.isclose(block["video.fps"], self.fps):
                problems.append(f"{where}: video.fps {block['video.fps']} differs from fps {self.fps}")
            if block.get("video.is_depth_map") is True:
                problems.append(f"{where}: video.is_depth_map is true for an RGB camera")
        self._add("info.video_info", GROUP_META, "Camera info blocks complete", problems)

    # ---------------------------------------------------------------- JSONL metadata

    def _read_jsonl(self, rel: str, required: bool) -> tuple[list[dict] | None, list[str]]:
        path = self.root / rel
        if not path.exists():
            return (None, [f"{rel} missing"]) if required else ([], [])
        rows, problems = [], []
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            return None, [f"{rel}: unreadable ({e})"]
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(f"{rel}:{lineno}: invalid JSON ({e.msg})")
                continue
            if not isinstance(row, dict):
                problems.append(f"{rel}:{lineno}: not a JSON object")
                continue
            row["_line"] = lineno
            rows.append(row)
        return rows, problems

    def check_metadata_files(self) -> None:
        total = self.info.get("total_episodes")
        required = not (_is_int(total) and total == 0)

        rows, problems = self._read_jsonl(fmt.TASKS_PATH, required)
        for row in rows or []:
            where = f"{fmt.TASKS_PATH}:{row['_line']}"
            if not _is_int(row.get("task_index")) or not isinstance(row.get("task"), str):
                problems.append(f"{where}: expected {{\"task_index\": int, \"task\": str}}, got {_strip(row)}")
            elif row["task_index"] in self.tasks:
                problems.append(f"{where}: task_index {row['task_index']} repeated")
            else:
                self.tasks[row["task_index"]] = row["task"]
        if sorted(self.tasks) != list(range(len(self.tasks))):
            problems.append(f"{fmt.TASKS_PATH}: task_index values {sorted(self.tasks)} are not 0..{len(self.tasks) - 1}")
        self._add("tasks.jsonl", GROUP_META, f"tasks.jsonl is valid JSONL ({len(self.tasks)} task(s))", problems)

        rows, problems = self._read_jsonl(fmt.EPISODES_PATH, required)
        for position, row in enumerate(rows or []):
            where = f"{fmt.EPISODES_PATH}:{row['_line']}"
            index, tasks, length = row.get("episode_index"), row.get("tasks"), row.get("length")
            if not (_is_int(index) and _is_int(length) and isinstance(tasks, list)
                    and all(isinstance(t, str) for t in tasks)):
                problems.append(f"{where}: expected {{\"episode_index\": int, \"tasks\": [str], \"length\": int}}, "
                                f"got {_strip(row)}")
                continue
            if index != position:
                problems.append(f"{where}: episode_index {index}, expected {position} (episodes must be 0..N-1 in order)")
            if length <= 0:
                problems.append(f"{where}: episode {index} has length {length}")
            # Later checks look for the files of episode `position`: one wrong number is one finding, not ten.
            self.episodes.append(_Episode(index=position, length=length, tasks=tasks))
        indices = [r.get("episode_index") for r in rows or []]
        problems[:0] = _row_problems(fmt.EPISODES_PATH, indices, max([-1, *filter(_is_int, indices)]) + 1)
        self._add("episodes.jsonl", GROUP_META,
                  f"episodes.jsonl is valid JSONL ({len(self.episodes)} episode(s))", problems)

        known = set(self.tasks.values())
        problems = [f"{fmt.EPISODES_PATH}: episode {ep.index} task {t!r} is not in {fmt.TASKS_PATH}"
                    for ep in self.episodes for t in ep.tasks if t not in known]
        self._add("episodes.tasks", GROUP_META, "Every episode task is in tasks.jsonl", problems)

        rows, problems = self._read_jsonl(fmt.EPISODES_STATS_PATH, required)
        rows = rows or []
        for row in rows:
            if not _is_int(row.get("episode_index")) or not isinstance(row.get("stats"), dict):
                problems.append(f"{fmt.EPISODES_STATS_PATH}:{row['_line']}: expected "
                                f"{{\"episode_index\": int, \"stats\": {{...}}}}, got keys {sorted(_strip(row))}")
        self.stats_rows = [r for r in rows if _is_int(r.get("episode_index")) and isinstance(r.get("stats"), dict)]
        have = [r["episode_index"] for r in self.stats_rows]
        want = [ep.index for ep in self.episodes]
        problems += _row_problems(fmt.EPISODES_STATS_PATH, have, len(self.episodes))
        if have != want:
            problems.append(f"{fmt.EPISODES_STATS_PATH}: entries for episodes {_ranges(have)}, "
                            f"episodes.jsonl has {_ranges(want)}")
        self._add("episodes_stats.jsonl", GROUP_META,
                  f"episodes_stats.jsonl is valid JSONL ({len(self.stats_rows)} entries)", problems)

    # ---------------------------------------------------------------- parquet

    def load_parquets(self) -> None:
        problems, details = [], []
        expected = {fmt.data_relpath(ep.index, self.chunks_size) for ep in self.episodes}
        for ep in self.episodes:
            rel = fmt.data_relpath(ep.index, self.chunks_size)
            path = self.root / rel
            if not path.exists():
                problems.append(f"{rel} missing (episode {ep.index})")
                continue
            try:
                ep.table = pq.read_table(path)
            except Exception as e:  # noqa: BLE001 - any unreadable parquet is a finding, never a crash
                problems.append(f"{rel}: unreadable ({e})")
                continue
            details.append(f"{rel}: {ep.table.num_rows} rows")
        for path in sorted((self.root / "data").rglob("*.parquet")):
            rel = path.relative_to(self.root).as_posix()
            if rel not in expected:
                problems.append(f"{rel}: not an episode in episodes.jsonl ({REPAIR_HINT})")
        self._add("parquet.files", GROUP_PARQUET,
                  f"One parquet file per episode ({len(self.episodes)} file(s))", problems, details)

    def _tables(self) -> list[_Episode]:
        return [ep for ep in self.episodes if ep.table is not None]

    def check_parquet_schema(self) -> None:
        want = self._column_features
        problems = []
        for ep in self._tables():
            rel = fmt.data_relpath(ep.index, self.chunks_size)
            have = ep.table.column_names
            missing = [c for c in want if c not in have]
            extra = [c for c in have if c not in want]
            if missing:
                problems.append(f"{rel}: Parquet missing columns: {missing}")
            if extra:
                problems.append(f"{rel}: Parquet has columns that are not features: {extra}")
        self._add("parquet.schema", GROUP_PARQUET, f"Parquet columns match the features ({len(want)} columns)",
                  problems)

        problems = []
        for ep in self._tables():
            rel = fmt.data_relpath(ep.index, self.chunks_size)
            for name in want:
                if name not in ep.table.column_names:
                    continue
                expected = _expected_arrow_type(self.typed[name])
                actual = ep.table.schema.field(name).type
                if expected is not None and actual != expected:
                    problems.append(f"{rel}: column '{name}' is {actual}, expected {expected}")
                nulls = ep.table.column(name).null_count
                if nulls:
                    problems.append(f"{rel}: column '{name}' has {nulls} null value(s)")
        self._add("parquet.types", GROUP_PARQUET,
                  "Column data types match the features (vectors fixed_size_list<float32>, int64 indices)", problems)

    def _column(self, ep: _Episode, name: str) -> np.ndarray | None:
        """Column as a numpy array ([rows] or [rows, n]); None if absent or not numeric."""
        if name not in ep.table.column_names:
            return None
        try:
            col = ep.table.column(name).combine_chunks()
            if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
                values = col.flatten().to_numpy(zero_copy_only=False)
                return values.reshape(len(col), -1) if len(col) else values.reshape(0, 1)
            return col.to_numpy(zero_copy_only=False)
        except (pa.ArrowException, ValueError):
            return None

    def check_episode_columns(self) -> None:
        fps = self.fps
        lengths, ts_problems, fi_problems, ei_problems, ix_problems, ti_problems = [], [], [], [], [], []
        length_details, ts_details = [], []
        next_index = 0
        for ep in self.episodes:
            if ep.table is None:
                next_index += ep.length
                continue
            rel = fmt.data_relpath(ep.index, self.chunks_size)
            rows = ep.table.num_rows
            if rows != ep.length:
                lengths.append(f"{rel}: {rows} rows, episodes.jsonl says length {ep.length} (episode {ep.index})")
            else:
                length_details.append(f"episode {ep.index}: {rows} frames")

            ts = self._column(ep, "timestamp")
            if ts is not None and fps and rows and ts.size == rows:  # a list-typed column is parquet.types' finding
                ts = ts.astype(np.float64).reshape(-1)
                grid = np.arange(rows) / fps
                if abs(ts[0]) > TIMESTAMP_TOLERANCE_S:
                    ts_problems.append(f"episode {ep.index}: first timestamp is {ts[0]:.6f} s, expected 0")
                steps = np.diff(ts)
                bad = np.flatnonzero(np.abs(steps - 1 / fps) > TIMESTAMP_TOLERANCE_S)
                if bad.size:
                    i = int(bad[0])
                    ts_problems.append(f"episode {ep.index}: timestamp[{i + 1}] - timestamp[{i}] = {steps[i]:.6f} s, "
                                       f"expected {1 / fps:.6f} ± {TIMESTAMP_TOLERANCE_S} s ({bad.size} bad step(s))")
                elif abs(ts[0]) <= TIMESTAMP_TOLERANCE_S:
                    drift = np.abs(ts - grid)
                    if drift.max() > TIMESTAMP_TOLERANCE_S:
                        i = int(drift.argmax())
                        ts_problems.append(f"episode {ep.index}: timestamp[{i}] = {ts[i]:.6f} s drifted from "
                                           f"{grid[i]:.6f} s (frame i must be at i/fps)")
                ts_details.append(f"episode {ep.index}: {ts[0]:.4f} .. {ts[-1]:.4f} s in steps of 1/{fps}")

            fi = self._column(ep, "frame_index")
            if fi is not None and not np.array_equal(fi.reshape(-1), np.arange(rows)):
                i = _first_mismatch(fi.reshape(-1), np.arange(rows))
                fi_problems.append(f"episode {ep.index}: frame_index[{i}] is {_at(fi, i)}, expected {i} "
                                   f"(frame_index must be 0..{rows - 1})")
            ei = self._column(ep, "episode_index")
            if ei is not None and not np.all(ei == ep.index):
                i = int(np.flatnonzero(ei.reshape(-1) != ep.index)[0])
                ei_problems.append(f"{rel}: episode_index[{i}] is {_at(ei, i)}, expected {ep.index}")
            ix = self._column(ep, "index")
            expected_ix = np.arange(next_index, next_index + rows)
            if ix is not None and not np.array_equal(ix.reshape(-1), expected_ix):
                i = _first_mismatch(ix.reshape(-1), expected_ix)
                ix_problems.append(f"episode {ep.index}: index[{i}] is {_at(ix, i)}, expected {next_index + i} "
                                   f"(index continues across episodes)")
            next_index += rows
            ti = self._column(ep, "task_index")
            if ti is not None:
                for t in sorted(set(ti.reshape(-1).tolist())):
                    if t not in self.tasks:
                        ti_problems.append(f"{rel}: task_index {t} is not in {fmt.TASKS_PATH}")
                    elif self.tasks[t] not in ep.tasks:
                        ti_problems.append(f"{rel}: task {self.tasks[t]!r} (task_index {t}) is not in "
                                           f"episode {ep.index}'s tasks in {fmt.EPISODES_PATH}")
        total = sum(ep.table.num_rows for ep in self._tables())
        self._add("parquet.lengths", GROUP_PARQUET,
                  f"Frame counts match episodes.jsonl ({total} frames in {len(self._tables())} episode(s))",
                  lengths, length_details)
        if fps:  # without a valid fps (info.fields reports it) there is no grid to check against
            self._add("parquet.timestamps", GROUP_PARQUET,
                      f"Timestamps start at 0 and step by 1/fps (± {TIMESTAMP_TOLERANCE_S} s)", ts_problems, ts_details)
        self._add("parquet.frame_index", GROUP_PARQUET, "frame_index is 0..length-1 in every episode", fi_problems)
        self._add("parquet.episode_index", GROUP_PARQUET, "episode_index matches the episode", ei_problems)
        self._add("parquet.index", GROUP_PARQUET, "index is continuous across episodes", ix_problems)
        self._add("parquet.task_index", GROUP_PARQUET, "task_index values refer to the episode's tasks", ti_problems)

    # ---------------------------------------------------------------- totals

    def check_totals(self) -> None:
        info, problems = self.info, []
        n = len(self.episodes)
        on_disk_frames = sum(ep.table.num_rows for ep in self._tables())
        videos = sorted((self.root / "videos").rglob("*.mp4"))
        expected = {
            "total_episodes": n,
            "total_frames": on_disk_frames if len(self._tables()) == n else sum(ep.length for ep in self.episodes),
            "total_tasks": len(self.tasks),
            "total_videos": len(videos),
            "total_chunks": math.ceil(n / self.chunks_size),
        }
        sources = {
            "total_episodes": "episodes in episodes.jsonl",
            "total_frames": "parquet rows on disk",
            "total_tasks": "tasks in tasks.jsonl",
            "total_videos": "mp4 files under videos/",
            "total_chunks": f"chunks for {n} episode(s)",
        }
        for key, want in expected.items():
            if _is_int(info.get(key)) and info[key] != want:
                problems.append(f"{fmt.INFO_PATH}: {key} is {info[key]}, but there are {want} {sources[key]}"
                                + (f" ({REPAIR_HINT})" if info[key] < want else ""))
        want_videos = n * len(self._video_keys)
        if _is_int(info.get("total_videos")) and info["total_videos"] != want_videos:
            problems.append(f"{fmt.INFO_PATH}: total_videos is {info['total_videos']}, expected {want_videos} "
                            f"({n} episode(s) x {len(self._video_keys)} camera(s))")
        self._add("info.totals", GROUP_META,
                  f"info.json totals match the files ({n} episodes, {on_disk_frames} frames, {len(videos)} videos)",
                  problems)

    # ---------------------------------------------------------------- videos

    def check_videos(self) -> None:
        if not self._video_keys and not (self.root / "videos").is_dir():
            return
        cams_on_disk = _camera_dirs(self.root)
        want = set(self._video_keys)
        problems = []
        if cams_on_disk != want:
            if want - cams_on_disk and self.episodes:
                problems.append(f"Camera directories missing under videos/: {sorted(want - cams_on_disk)}")
            if cams_on_disk - want:
                problems.append(f"Camera directories that are not video features: {sorted(cams_on_disk - want)}")
        self._add("videos.cameras", GROUP_VIDEO, f"Camera directories match the features: {want or '{}'}", problems)

        probes: dict[tuple[str, int], tuple[str, VideoProbe]] = {}
        frames_problems, frames_details = [], []
        for key in sorted(want):
            problems = []
            expected = {fmt.video_relpath(key, ep.index, self.chunks_size) for ep in self.episodes}
            for ep in self.episodes:
                rel = fmt.video_relpath(key, ep.index, self.chunks_size)
                if not (self.root / rel).exists():
                    problems.append(f"{rel} missing (episode {ep.index})")
                    continue
                try:
                    probes[(key, ep.index)] = (rel, probe_video(self.root / rel))
                except Exception as e:  # noqa: BLE001 - an undecodable file is a finding, never a crash
                    frames_problems.append(f"{rel}: cannot be decoded ({type(e).__name__}: {e})")
            found = sorted(p.relative_to(self.root).as_posix() for p in (self.root / "videos").glob(f"chunk-*/{key}/*"))
            problems += [f"{rel}: not a video of an episode in episodes.jsonl ({REPAIR_HINT})"
                         for rel in found if rel not in expected]
            self._add(f"videos.count:{key}", GROUP_VIDEO, f"Camera {key}: {len(found)} video(s) found", problems)

        fps_problems, info_problems = [], []
        for ep in self.episodes:
            rows = ep.table.num_rows if ep.table is not None else ep.length
            for key in sorted(want):
                if (key, ep.index) not in probes:
                    continue
                rel, probe = probes[(key, ep.index)]
                if probe.frames != rows:
                    frames_problems.append(f"{rel}: {probe.frames} decoded frames, parquet has {rows} rows")
                else:
                    frames_details.append(f"{rel}: {probe.frames} frames, {probe.codec} {probe.pix_fmt} "
                                          f"{probe.width}x{probe.height} @ {probe.fps:g} fps")
                fps_problems += self._video_timing_problems(rel, probe)
                info_problems += self._video_info_problems(key, rel, probe)
        self._add("videos.frames", GROUP_VIDEO, "Every video decodes to as many frames as its parquet has rows",
                  frames_problems, frames_details)
        if self.fps:
            self._add("videos.fps", GROUP_VIDEO, f"Video frame rate is {self.fps} fps and frame i is at i/fps",
                      fps_problems)
        self._add("videos.info", GROUP_VIDEO, "Camera info blocks match the video files", info_problems)

    def _video_timing_problems(self, rel: str, probe: VideoProbe) -> list[str]:
        if not self.fps:
            return []
        if probe.fps is None or not math.isclose(probe.fps, self.fps, rel_tol=1e-3):
            return [f"{rel}: stream frame rate {probe.fps} fps, info.json fps is {self.fps}"]
        times = np.asarray(probe.frame_times)
        off = np.abs(times - np.arange(len(times)) / self.fps)
        if off.size and off.max() > TIMESTAMP_TOLERANCE_S:
            i = int(off.argmax())
            return [f"{rel}: frame {i} is presented at {times[i]:.6f} s, expected {i / self.fps:.6f} s"]
        return []

    def _video_info_problems(self, key: str, rel: str, probe: VideoProbe) -> list[str]:
        block = self.features[key].get("info")
        shape = self.features[key].get("shape")
        problems = []
        if isinstance(shape, list) and len(shape) == 3 and (probe.height, probe.width) != (shape[0], shape[1]):
            problems.append(f"{rel}: {probe.width}x{probe.height} (w x h), feature shape is {shape}")
        if not isinstance(block, dict):
            return problems
        actual = {  # video.fps: info.video_info ties it to info fps, videos.fps ties the file to that
            "video.codec": probe.codec,
            "video.pix_fmt": probe.pix_fmt,
            "video.height": probe.height,
            "video.width": probe.width,
            "has_audio": probe.has_audio,
        }
        for name, value in actual.items():
            # A field of the wrong type is info.video_info's finding; comparing it would report it twice.
            if is_json_type(block.get(name), _VIDEO_INFO_TYPES[name]) and block[name] != value:
                problems.append(f"{rel}: {name} is {value!r} in the file, info.json says {block[name]!r}")
        return problems

    # ---------------------------------------------------------------- stats

    def check_stats(self) -> None:
        present, shapes, image_range, values = [], [], [], []
        by_episode = {row["episode_index"]: row["stats"] for row in self.stats_rows}
        for ep in self.episodes:
            stats = by_episode.get(ep.index)
            if stats is None:
                continue
            where = f"{fmt.EPISODES_STATS_PATH}: episode {ep.index}"
            for key in self._numeric_features:
                ft = self.features[key]
                entry = stats.get(key)
                if not isinstance(entry, dict):
                    present.append(f"{where}: feature '{key}' has no stats")
                    continue
                missing = [s for s in _STATS_KEYS if s not in entry]
                if missing:
                    present.append(f"{where}: '{key}' stats lack {missing}")
                    continue
                try:
                    arrays = {s: np.asarray(entry[s], dtype=np.float64) for s in _STATS_KEYS}
                except (TypeError, ValueError):
                    shapes.append(f"{where}: '{key}' stats are not numeric arrays")
                    continue
                is_image = ft.get("dtype") in ("video", "image")
                want = (3, 1, 1) if is_image else _shape(ft)
                if want is None:
                    continue  # no valid shape to compare with: info.features reports it
                for s in ("min", "max", "mean", "std"):
                    if arrays[s].shape != want:
                        shapes.append(f"{where}: '{key}' {s} has shape {arrays[s].shape}, expected {want}")
                if arrays["count"].shape != (1,):
                    shapes.append(f"{where}: '{key}' count has shape {arrays['count'].shape}, expected (1,)")
                if any(arrays[s].shape != want for s in ("min", "max", "mean", "std")):
                    continue
                if is_image:
                    for s in ("min", "max", "mean", "std"):
                        if np.any((arrays[s] < 0) | (arrays[s] > 1)) or not np.all(np.isfinite(arrays[s])):
                            image_range.append(f"{where}: '{key}' {s} {arrays[s].reshape(-1).tolist()} "
                                               f"is outside [0, 1]")
                values += self._stats_value_problems(where, key, arrays, ep, is_image)
        self._add("stats.features", GROUP_STATS, "Stats present for every non-string feature", present)
        self._add("stats.shapes", GROUP_STATS, "Stats shapes match (images (3,1,1), vectors [n])", shapes)
        if self._video_keys:
            self._add("stats.image_range", GROUP_STATS, "Image stats are within [0, 1]", image_range)
        self._add("stats.values", GROUP_STATS, "Stats agree with the data (min ≤ mean ≤ max, counts, extrema)",
                  values)

    def _stats_value_problems(self, where: str, key: str, arrays: dict, ep: _Episode, is_image: bool) -> list[str]:
        problems = []
        lo, hi, mean, std = arrays["min"], arrays["max"], arrays["mean"], arrays["std"]
        tol = 1e-6 * np.maximum(1.0, np.abs(mean))
        if np.any(lo > mean + tol) or np.any(mean > hi + tol) or np.any(std < 0):
            problems.append(f"{where}: '{key}' has min > mean, mean > max or std < 0")
        count = arrays["count"].reshape(-1)[0] if arrays["count"].size else -1
        if is_image:
            if not 1 <= count <= ep.length:
                problems.append(f"{where}: '{key}' count {count:g}, expected 1..{ep.length} sampled frames")
            return problems
        if count != ep.length:
            problems.append(f"{where}: '{key}' count {count:g}, episode has {ep.length} frames")
        data = self._column(ep, key) if ep.table is not None else None
        if data is not None and data.size and np.issubdtype(data.dtype, np.number):
            data = data.reshape(len(data), -1).astype(np.float64)
            if data.shape[1] == lo.size:
                if not (np.allclose(data.min(axis=0), lo.reshape(-1), rtol=1e-5, atol=1e-6)
                        and np.allclose(data.max(axis=0), hi.reshape(-1), rtol=1e-5, atol=1e-6)):
                    problems.append(f"{where}: '{key}' min/max differ from the parquet data")
        return problems

    # ---------------------------------------------------------------- working files

    def check_working_files(self) -> None:
        tmps = [p.relative_to(self.root).as_posix() for p in self.root.rglob("*" + fmt.TEMP_SUFFIX)
                if fmt.SPOOL_DIR not in p.relative_to(self.root).parts]
        self._add("files.tmp", GROUP_WORKING, "No stray *.tmp files",
                  [f"stray temp file {t} ({REPAIR_HINT})" for t in sorted(tmps)])
        spooled = spooled_episode_dirs(self.root / fmt.SPOOL_DIR)
        # .staging/<spool id>/ of a still-spooled episode is its video being encoded live: part of
        # that episode's recoverable work (the spool warning), not a leftover of a finished save.
        staging = self.root / fmt.STAGING_DIR
        spool_ids = {p.name for p in spooled}
        leftovers = sorted(p.relative_to(self.root).as_posix() for p in staging.rglob("*")
                           if p.is_file() and p.relative_to(staging).parts[0] not in spool_ids) \
            if staging.is_dir() else []
        self._add("files.staging", GROUP_WORKING, f"{fmt.STAGING_DIR}/ holds no unfinished files",
                  [f"{fmt.STAGING_DIR}/ holds unfinished files ({REPAIR_HINT}): {', '.join(leftovers)}"]
                  if leftovers else [])
        if spooled:
            try:
                info = DatasetInfo.from_json(self.info, fmt.INFO_PATH, fmt.CODEBASE_VERSION)
                committed = committed_spools(self.root, info, [load_spooled_episode(p) for p in spooled])
            except Exception:  # noqa: BLE001 - an unreadable spool or dataset: none is verifiably committed
                committed = {}
            states = {p.name: self._spool_state(p, committed.get(p)) for p in spooled}
            pending = [name for name, (committed, _) in states.items() if not committed]
            message = (f"{len(pending)} uncommitted spooled episode(s) in {fmt.SPOOL_DIR}/: {', '.join(pending)} "
                       f"— LeRobotDataset.open(root) recovers ended episodes" if pending else
                       f"{len(states)} committed episode(s) still in {fmt.SPOOL_DIR}/: {', '.join(states)} "
                       f"— LeRobotDataset.open(root) removes them")
            self._warn("files.spool", GROUP_WORKING, message,
                       [f"{fmt.SPOOL_DIR}/{name}: {state}" for name, (_, state) in states.items()])

    def _spool_state(self, path: Path, committed_as: int | None) -> tuple[bool, str]:
        """(already committed?, what LeRobotDataset.open(root) will do with this spooled episode)."""
        if committed_as is not None:
            return True, f"already committed as episode {committed_as} — LeRobotDataset.open(root) removes the leftover"
        if (path / ENDED_MARKER).exists():
            return False, "ended, not committed — LeRobotDataset.open(root) commits it"
        return False, (f"interrupted mid-episode — python scripts/recover_episodes.py {self.root} "
                       "--include-partial commits it, --discard-partial deletes it")

    # ---------------------------------------------------------------- reference

    def compare_with_reference(self) -> None:
        ref = self.ref
        problems = []
        ref_keys, keys = set(ref.info), set(self.info)
        if ref_keys - keys:
            problems.append(f"info.json lacks fields the reference has: {sorted(ref_keys - keys)}")
        if keys - ref_keys:
            problems.append(f"info.json has fields the reference lacks: {sorted(keys - ref_keys)}")
        if ref.info.get("fps") != self.info.get("fps"):
            problems.append(f"fps is {self.info.get('fps')}, reference has {ref.info.get('fps')}")
        ref_features = ref.info["features"]
        for key in sorted(set(ref_features) | set(self.features)):
            if key not in self.features:
                problems.append(f"feature '{key}' of the reference is missing")
            elif key not in ref_features:
                problems.append(f"feature '{key}' is not in the reference")
            else:
                mine, theirs = _signature(key, self.features[key]), _signature(key, ref_features[key])
                if mine != theirs:
                    problems.append(f"feature '{key}' is {mine}, reference has {theirs}")
                mine_info = set((self.features[key].get("info") or {}).keys())
                theirs_info = set((ref_features[key].get("info") or {}).keys())
                if mine_info != theirs_info:
                    problems.append(f"feature '{key}' info block keys {sorted(mine_info)}, "
                                    f"reference has {sorted(theirs_info)}")
        self._add("reference.info", GROUP_META, "info.json structure matches", problems)

        tables = self._tables()
        if ref.schema is not None and tables:
            schema = tables[0].table.schema
            mine, theirs = schema.names, ref.schema.names
            problems = []
            if set(theirs) - set(mine):
                problems.append(f"Parquet missing columns: {set(theirs) - set(mine)}")
            if set(mine) - set(theirs):
                problems.append(f"Parquet has columns the reference lacks: {set(mine) - set(theirs)}")
            self._add("reference.parquet_schema", GROUP_PARQUET, f"Parquet schema matches ({len(mine)} columns)",
                      problems)
            problems = [f"column '{n}' is {schema.field(n).type}, reference has {ref.schema.field(n).type}"
                        for n in mine if n in theirs and schema.field(n).type != ref.schema.field(n).type]
            self._add("reference.parquet_types", GROUP_PARQUET, "Column data types match", problems)

        cams = _camera_dirs(self.root)
        problems = []
        if cams != ref.cameras:
            problems.append(f"Camera directories differ: target {sorted(cams)}, reference {sorted(ref.cameras)}")
        self._add("reference.cameras", GROUP_VIDEO, f"Camera directories match: {cams or '{}'}", problems)


# --------------------------------------------------------------------------- helpers


def _row_problems(rel: str, indices: list, expected: int) -> list[str]:
    """Repeated and missing episode rows, named (what older versions left; LeRobotDataset.open repairs them)."""
    counts: dict[int, int] = {}
    for i in indices:
        if _is_int(i):
            counts[i] = counts.get(i, 0) + 1
    problems = [f"{rel}: episode_index {i} appears {n} times (LeRobotDataset.open(root) keeps the row that matches its parquet)"
                for i, n in sorted(counts.items()) if n > 1]
    missing = [i for i in range(expected) if i not in counts]
    if missing:
        problems.append(f"{rel}: no entry for episode {_ranges(missing)} "
                        f"(LeRobotDataset.open(root) rebuilds it from the episode's files)")
    return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _expected_arrow_type(ft: Feature) -> pa.DataType | None:
    """LeRobot's parquet type of a vector or scalar feature (others are stored otherwise by LeRobot: not checked)."""
    return arrow_type(ft) if len(ft.shape) == 1 else None


def _shape(ft: dict) -> tuple[int, ...] | None:
    shape = ft.get("shape")
    if isinstance(shape, list) and shape and all(_is_int(d) and d > 0 for d in shape):
        return tuple(shape)
    return None


def _signature(key: str, ft: Any) -> tuple | str:
    try:
        return Feature.from_json(key, ft).signature
    except fmt.DatasetFormatError:  # a malformed feature; info.features reports why
        return repr(ft)


def _strip(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "_line"}


def _first_mismatch(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


def _at(values: np.ndarray, i: int) -> Any:
    flat = values.reshape(-1)
    return flat[i].item() if i < len(flat) else "absent"


def _ranges(indices: list[int]) -> str:
    """[0,1,2,5] -> '0-2, 5' so long episode lists stay readable."""
    if not indices:
        return "none"
    parts, start = [], indices[0]
    for prev, cur in zip(indices, indices[1:] + [None]):
        if cur != prev + 1:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = cur
    return ", ".join(parts)
