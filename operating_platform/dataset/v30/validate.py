"""Check a LeRobot v3.0 dataset on disk as deeply as validate.py checks v2.1.

Why: in v3.0 an episode is a row range of a shared parquet and a time range of a shared
mp4, so the failure modes are new: segments that overlap or leave gaps, a segment whose
decoded frames do not match its `length`, `dataset_from_index` jumps, a stray parquet that
LeRobot's glob loads anyway. Every rule is one named Check (the report type of validate.py).
Nothing here writes to the dataset. Every video frame is decoded.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .. import format as fmt
from ..info import DatasetInfo, Feature, feature_problems, field_problems
from ..spool import spooled_episode_dirs
from ..stats import aggregate_stats
from ..validate import (
    GROUP_DIRS, GROUP_META, GROUP_PARQUET, GROUP_STATS, GROUP_VIDEO, GROUP_WORKING, TIMESTAMP_TOLERANCE_S,
    Check, ValidationReport, run_guarded,
)
from ..video import probe_video
from . import layout

REPAIR_HINT = "left by an interrupted save or pack? LeRobotDataset.open(root) finishes or rolls it back"
_EPISODE_COLUMNS = ("episode_index", "tasks", "length", "data/chunk_index", "data/file_index",
                    "dataset_from_index", "dataset_to_index", "meta/episodes/chunk_index", "meta/episodes/file_index")


def validate_v30(root: Path | str) -> ValidationReport:
    root = Path(root)
    v = _Validator(root)
    v.run()
    return ValidationReport(target=root, reference=None, checks=v.checks)


class _Validator:
    def __init__(self, root: Path):
        self.root = root
        self.checks: list[Check] = []
        self.info: DatasetInfo | None = None
        self.features: dict[str, Feature] = {}
        self.episodes: list[dict] = []
        self.tasks: list[str] = []
        self.data: dict[tuple[int, int], dict] = {}  # (chunk, file) -> columns as numpy

    def _add(self, name: str, group: str, ok: str, problems: list[str]) -> bool:
        if problems:
            msg = problems[0] if len(problems) == 1 else f"{problems[0]} (and {len(problems) - 1} more)"
            self.checks.append(Check(name, False, msg, group, list(problems)))
        else:
            self.checks.append(Check(name, True, ok, group, []))
        return not problems

    def run(self) -> None:
        path = self.root / fmt.INFO_PATH
        try:
            raw = fmt.read_json(path)
            if not isinstance(raw, dict) or raw.get("codebase_version") != layout.CODEBASE_VERSION:
                raise fmt.DatasetFormatError(field_problems(raw, str(path), layout.CODEBASE_VERSION)[0])
        except FileNotFoundError:
            self._add("info.json", GROUP_META, "", [f"{path}: missing (not a LeRobot dataset root?)"])
            return
        except (OSError, UnicodeDecodeError, fmt.DatasetFormatError) as e:
            self._add("info.json", GROUP_META, "", [str(e)])
            return
        if not self.check_info(raw):
            return  # the other checks read the dataset through a well-formed info.json
        for step, group in (
            (self.check_tasks, GROUP_META), (self.check_episodes, GROUP_META),
            (self.check_data, GROUP_PARQUET), (self.check_videos, GROUP_VIDEO), (self.check_stats, GROUP_STATS),
            (self.check_files, GROUP_DIRS), (self.check_working, GROUP_WORKING),
        ):
            run_guarded(self._add, step, group)

    @property
    def video_keys(self) -> list[str]:
        return self.info.video_keys

    # ---------------------------------------------------------------- metadata

    def check_info(self, raw: dict) -> bool:
        """info.fields: every problem of info.json listed; True when it parses as a DatasetInfo."""
        problems = field_problems(raw, fmt.INFO_PATH, layout.CODEBASE_VERSION)
        features = raw.get("features") if isinstance(raw.get("features"), dict) else {}
        problems += [p for key, ft in features.items() for p in feature_problems(key, ft)]
        try:
            self.info = DatasetInfo.from_json(raw, fmt.INFO_PATH, layout.CODEBASE_VERSION)
            self.features = self.info.features
        except fmt.DatasetFormatError as e:
            problems += [] if str(e) in problems else [str(e)]
        if self.info is not None:
            if self.info.data_path_template != layout.DATA_PATH:
                problems.append(f"{fmt.INFO_PATH}: data_path {self.info.data_path_template!r}, LeRobot uses {layout.DATA_PATH!r}")
            if self.video_keys and self.info.video_path_template != layout.VIDEO_PATH:
                problems.append(f"{fmt.INFO_PATH}: video_path {self.info.video_path_template!r}, "
                                f"LeRobot uses {layout.VIDEO_PATH!r}")
            problems += [f"{fmt.INFO_PATH}: feature '{key}' is missing" for key in fmt.DEFAULT_FEATURES
                         if key not in self.features]
            problems += [f"{fmt.INFO_PATH}: video feature '{key}' has no info block" for key in self.video_keys
                         if self.features[key].info is None]
        self._add("info.fields", GROUP_META, "info.json has LeRobot v3.0's fields and paths", problems)
        return self.info is not None

    def check_tasks(self) -> None:
        problems = []
        try:
            self.tasks = layout.read_tasks(self.root)
            if not (self.root / layout.TASKS_PATH).exists():
                problems.append(f"{layout.TASKS_PATH} is missing")
        except Exception as e:  # noqa: BLE001
            problems.append(f"{layout.TASKS_PATH}: unreadable ({e})")
        if not problems and len(self.tasks) != self.info.total_tasks:
            problems.append(f"{layout.TASKS_PATH} lists {len(self.tasks)} tasks, info.json total_tasks is {self.info.total_tasks}")
        if len(set(self.tasks)) != len(self.tasks):
            problems.append(f"{layout.TASKS_PATH}: a task is listed twice")
        self._add("meta.tasks", GROUP_META, "meta/tasks.parquet lists task_index 0..n-1", problems)

    def check_episodes(self) -> None:
        problems, continuity, totals = [], [], []
        for path in sorted((self.root / layout.EPISODES_DIR).glob("*/*.parquet")):
            rel = path.relative_to(self.root).as_posix()
            try:
                rows = pq.read_table(path).to_pylist()
            except Exception as e:  # noqa: BLE001
                problems.append(f"{rel}: unreadable ({e})")
                continue
            for row in rows:
                missing = [c for c in _EPISODE_COLUMNS if c not in row]
                missing += [c for k in self.video_keys for c in layout.video_columns(k) if c not in row]
                if missing:
                    problems.append(f"{rel}: episode {row.get('episode_index')} lacks {missing}")
                    continue
                if layout.episodes_relpath(row["meta/episodes/chunk_index"], row["meta/episodes/file_index"]) != rel:
                    problems.append(f"{rel}: episode {row['episode_index']} says it is in another meta/episodes file")
                unknown = [t for t in row["tasks"] if t not in self.tasks]
                if unknown:
                    problems.append(f"{rel}: episode {row['episode_index']} has tasks {unknown} not in {layout.TASKS_PATH}")
                self.episodes.append(row)
        self._add("meta.episodes", GROUP_META, "meta/episodes/ rows are readable and complete", problems)
        index = [e["episode_index"] for e in self.episodes]
        if index != list(range(len(index))):
            continuity.append(f"meta/episodes: episode_index runs {index[:10]}..., expected 0..{len(index) - 1} in order")
        at = 0
        for e in self.episodes:
            if e["dataset_from_index"] != at:
                continuity.append(f"episode {e['episode_index']}: dataset_from_index {e['dataset_from_index']}, expected {at}")
            if e["dataset_to_index"] - e["dataset_from_index"] != e["length"]:
                continuity.append(f"episode {e['episode_index']}: dataset_to_index - dataset_from_index "
                                  f"= {e['dataset_to_index'] - e['dataset_from_index']}, length is {e['length']}")
            at = e["dataset_to_index"]
        self._add("episodes.continuity", GROUP_META, "dataset_from_index/dataset_to_index run back to back from 0", continuity)
        frames = sum(e["length"] for e in self.episodes)
        if self.info.total_episodes != len(self.episodes):
            totals.append(f"info.json total_episodes {self.info.total_episodes}, meta/episodes has {len(self.episodes)} ({REPAIR_HINT})")
        if self.info.total_frames != frames:
            totals.append(f"info.json total_frames {self.info.total_frames}, the episodes' lengths sum to {frames}")
        if self.info.splits != ({"train": f"0:{len(self.episodes)}"} if self.episodes else {}) and self.episodes:
            totals.append(f"info.json splits {self.info.splits}, expected train 0:{len(self.episodes)}")
        self._add("totals", GROUP_META, "info.json totals match the episodes", totals)

    # ---------------------------------------------------------------- data

    def check_data(self) -> None:
        schema, rows = [], []
        columns = self.info.parquet_columns
        for path in sorted((self.root / "data").glob("*/*.parquet")):
            rel = path.relative_to(self.root).as_posix()
            try:
                table = pq.read_table(path)
            except Exception as e:  # noqa: BLE001
                schema.append(f"{rel}: unreadable ({e})")
                continue
            if sorted(table.column_names) != sorted(columns):
                schema.append(f"{rel}: columns {table.column_names}, features say {columns}")
                continue
            key = _chunk_file(rel)
            self.data[key] = {c: _numpy(table.column(c)) for c in columns}
        self._add("parquet.schema", GROUP_PARQUET, "Data parquets are whole and hold every non-video feature", schema)
        fps = self.info.fps
        total_rows = sum(len(d["index"]) for d in self.data.values())
        if total_rows != self.info.total_frames:
            rows.append(f"data/ holds {total_rows} rows, info.json total_frames is {self.info.total_frames}")
        for e in self.episodes:
            where = f"episode {e['episode_index']}"
            d = self.data.get((e["data/chunk_index"], e["data/file_index"]))
            if d is None:
                rows.append(f"{where}: its data file {layout.data_relpath(e['data/chunk_index'], e['data/file_index'])} is missing")
                continue
            mine = np.flatnonzero(d["episode_index"] == e["episode_index"])
            n = e["length"]
            if len(mine) != n:
                rows.append(f"{where}: {len(mine)} rows in its data file, length is {n}")
                continue
            if not np.array_equal(d["index"][mine], np.arange(e["dataset_from_index"], e["dataset_to_index"])):
                rows.append(f"{where}: index column is not {e['dataset_from_index']}..{e['dataset_to_index'] - 1}")
            if not np.array_equal(d["frame_index"][mine], np.arange(n)):
                rows.append(f"{where}: frame_index is not 0..{n - 1}")
            off = np.abs(d["timestamp"][mine].astype(np.float64) - np.arange(n) / fps)
            if off.size and off.max() > TIMESTAMP_TOLERANCE_S:
                rows.append(f"{where}: timestamp off the 1/fps grid by {off.max():.6f} s at frame {int(off.argmax())}")
            bad = sorted(set(d["task_index"][mine].tolist()) - set(range(len(self.tasks))))
            if bad:
                rows.append(f"{where}: task_index {bad} not in {layout.TASKS_PATH}")
        self._add("parquet.rows", GROUP_PARQUET, "Each episode's rows: index, frame_index, timestamps, tasks", rows)

    # ---------------------------------------------------------------- videos

    def check_videos(self) -> None:
        if not self.video_keys:
            return
        frames, timing, info_problems = [], [], []
        fps = self.info.fps
        probes = {}
        for key in self.video_keys:
            chunk_col, file_col, from_col, to_col = layout.video_columns(key)
            by_file = defaultdict(list)
            for e in self.episodes:
                by_file[(e[chunk_col], e[file_col])].append(e)
            for (chunk, file), eps in sorted(by_file.items()):
                rel = layout.video_relpath(key, chunk, file)
                if not (self.root / rel).exists():
                    frames.append(f"{rel} is missing (episodes {[e['episode_index'] for e in eps]})")
                    continue
                try:
                    probe = probes[rel] = probe_video(self.root / rel)
                except Exception as e:  # noqa: BLE001
                    frames.append(f"{rel}: cannot be decoded ({e})")
                    continue
                times = np.asarray(probe.frame_times)
                end = 0.0
                for e in sorted(eps, key=lambda e: e[from_col]):
                    where = f"{rel} episode {e['episode_index']}"
                    start, stop, n = e[from_col], e[to_col], e["length"]
                    if abs((stop - start) - n / fps) > TIMESTAMP_TOLERANCE_S:
                        timing.append(f"{where}: segment {start:.4f}..{stop:.4f} s lasts {stop - start:.4f} s, "
                                      f"{n} frames last {n / fps:.4f} s")
                    if start < end - TIMESTAMP_TOLERANCE_S:
                        timing.append(f"{where}: segment starts at {start:.4f} s, inside the previous one (ends {end:.4f} s)")
                    end = stop
                    seg = times[(times >= start - TIMESTAMP_TOLERANCE_S) & (times < stop - TIMESTAMP_TOLERANCE_S)]
                    if len(seg) != n:
                        frames.append(f"{where}: {len(seg)} frames decoded in {start:.4f}..{stop:.4f} s, length is {n}")
                    elif np.abs(seg - (start + np.arange(n) / fps)).max() > TIMESTAMP_TOLERANCE_S:
                        timing.append(f"{where}: frames are not at from_timestamp + i/fps")
                if abs(end - len(times) / fps) > TIMESTAMP_TOLERANCE_S:
                    frames.append(f"{rel}: holds {len(times)} frames, its episodes' segments end at {end:.4f} s")
                vinfo = self.features[key].info or {}
                for field, got in (("video.codec", probe.codec), ("video.pix_fmt", probe.pix_fmt),
                                   ("video.width", probe.width), ("video.height", probe.height)):
                    if field in vinfo and vinfo[field] != got:
                        info_problems.append(f"{rel}: {field} is {got!r}, info.json says {vinfo[field]!r}")
        self._add("videos.frames", GROUP_VIDEO, "Every episode segment decodes to exactly `length` frames", frames)
        self._add("videos.timestamps", GROUP_VIDEO, "Segments [from_timestamp, to_timestamp) are back to back on the 1/fps grid", timing)
        self._add("videos.info", GROUP_VIDEO, "Videos match their info.json info block", info_problems)

    # ---------------------------------------------------------------- stats

    def check_stats(self) -> None:
        episodes_problems, global_problems = [], []
        per_episode = []
        numeric = self.info.stats_keys
        for e in self.episodes:
            stats = layout.episode_stats_of(e)
            per_episode.append(stats)
            where = f"episode {e['episode_index']}"
            for key in numeric:
                entry = stats.get(key)
                if not entry or any(entry.get(s) is None for s in layout.STAT_NAMES):
                    episodes_problems.append(f"{where}: stats of '{key}' missing ({layout.STAT_NAMES})")
                    continue
                is_image = self.features[key].dtype in ("video", "image")
                want = (3, 1, 1) if is_image else self.features[key].shape
                arrays = {s: np.asarray(entry[s], np.float64) for s in ("min", "max", "mean", "std")}
                if any(a.shape != want for a in arrays.values()):
                    episodes_problems.append(f"{where}: stats of '{key}' have shape {arrays['mean'].shape}, expected {want}")
                    continue
                count = int(np.asarray(entry["count"]).reshape(-1)[0])
                if is_image:
                    if not 1 <= count <= e["length"] or np.any((arrays["min"] < 0) | (arrays["max"] > 1)):
                        episodes_problems.append(f"{where}: image stats of '{key}' out of range (count {count}, values in [0, 1])")
                    continue
                if count != e["length"]:
                    episodes_problems.append(f"{where}: '{key}' count {count}, length is {e['length']}")
                d = self.data.get((e["data/chunk_index"], e["data/file_index"]))
                if d is not None and key in d:
                    values = d[key][d["episode_index"] == e["episode_index"]].reshape(count, -1).astype(np.float64)
                    if values.size and not (np.allclose(values.min(0), arrays["min"].reshape(-1), rtol=1e-5, atol=1e-6)
                                            and np.allclose(values.max(0), arrays["max"].reshape(-1), rtol=1e-5, atol=1e-6)
                                            and np.allclose(values.mean(0), arrays["mean"].reshape(-1), rtol=1e-5, atol=1e-6)):
                        episodes_problems.append(f"{where}: stats of '{key}' differ from its rows")
        self._add("stats.episodes", GROUP_STATS, "Per-episode stats are present and agree with the data", episodes_problems)
        stored = layout.read_stats(self.root)
        if self.episodes:
            if stored is None:
                global_problems.append(f"{layout.STATS_PATH} is missing")
            else:
                expected = aggregate_stats(per_episode)
                for key, by_stat in expected.items():
                    for stat, value in by_stat.items():
                        got = stored.get(key, {}).get(stat)
                        if got is None or np.shape(got) != np.shape(value) or not np.allclose(got, value, rtol=1e-6, atol=1e-7):
                            global_problems.append(f"{layout.STATS_PATH}: {key}.{stat} is not the aggregate of the episodes' stats")
        self._add("stats.global", GROUP_STATS, "meta/stats.json aggregates the per-episode stats", global_problems)

    # ---------------------------------------------------------------- files

    def check_files(self) -> None:
        used = {layout.data_relpath(e["data/chunk_index"], e["data/file_index"]) for e in self.episodes}
        used |= {layout.episodes_relpath(e["meta/episodes/chunk_index"], e["meta/episodes/file_index"]) for e in self.episodes}
        for key in self.video_keys:
            chunk_col, file_col, _, _ = layout.video_columns(key)
            used |= {layout.video_relpath(key, e[chunk_col], e[file_col]) for e in self.episodes}
        stray = []
        for sub in ("data", "videos", layout.EPISODES_DIR):
            base = self.root / sub
            for path in sorted(base.rglob("*")) if base.is_dir() else []:
                rel = path.relative_to(self.root).as_posix()
                if path.is_file() and rel not in used:
                    stray.append(f"stray file {rel}: no episode points at it (LeRobot's reader may load it; {REPAIR_HINT})")
        stray += [f"stray temp file {p.relative_to(self.root).as_posix()} ({REPAIR_HINT})"
                  for p in self.root.rglob("*" + fmt.TEMP_SUFFIX) if not set(p.relative_to(self.root).parts) & {layout.STORE_DIR, layout.PACK_DIR}]
        self._add("files.stray", GROUP_DIRS, "No file in data/, videos/ or meta/episodes/ that no episode uses", stray)

    def check_working(self) -> None:
        store = self.root / layout.STORE_DIR
        pending = []
        if (self.root / layout.PACK_DIR / layout.PACK_JOURNAL).exists():
            self._add("files.pack", GROUP_WORKING, "", [f"an interrupted pack is half applied ({REPAIR_HINT})"])
        try:
            store_total = DatasetInfo.load(store, fmt.CODEBASE_VERSION).total_episodes if (store / fmt.INFO_PATH).exists() else None
        except fmt.DatasetFormatError:
            store_total = None
        if store_total is not None and store_total > len(self.episodes):
            pending.append(f"{store_total - len(self.episodes)} committed episode(s) in {layout.STORE_DIR}/ not packed yet "
                           "— LeRobotDataset.open(root) packs them")
        spooled = spooled_episode_dirs(store / fmt.SPOOL_DIR)
        if spooled:
            pending.append(f"{len(spooled)} spooled episode(s) in {layout.STORE_DIR}/{fmt.SPOOL_DIR}/: {', '.join(p.name for p in spooled)} "
                           f"— LeRobotDataset.open(root) commits ended ones; python scripts/recover_episodes.py "
                           f"{self.root} --include-partial commits interrupted ones")
        if pending:
            self.checks.append(Check("files.pending", True, pending[0], GROUP_WORKING, pending, warning=True))


def _chunk_file(rel: str) -> tuple[int, int]:
    chunk, file = Path(rel).parent.name, Path(rel).stem
    return int(chunk.split("-")[1]), int(file.split("-")[1])


def _numpy(column) -> np.ndarray:
    values = column.to_numpy() if column.type.num_fields == 0 else np.asarray(column.to_pylist())
    return np.asarray(values)
