"""Ways to break a valid dataset, one fault each, for the validator tests.

Each fault edits a copy of a dataset written by the real writer, the way a bug or a
crash would (a field dropped, a column retyped, a video re-encoded short, ...), and
names the validator checks that must then fail — and only those.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from operating_platform.dataset import format as fmt

TOP = "observation.images.top"
WRIST = "observation.images.wrist"


# --------------------------------------------------------------------------- editing primitives


def edit_info(root: Path, change: Callable[[dict], None]) -> None:
    path = root / fmt.INFO_PATH
    info = json.loads(path.read_text())
    change(info)
    path.write_text(json.dumps(info, indent=4))


def edit_jsonl(root: Path, rel: str, change: Callable[[list[dict]], list[dict]]) -> None:
    path = root / rel
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(json.dumps(r) + "\n" for r in change(rows)))


def replace_line(root: Path, rel: str, lineno: int, text: str) -> None:
    path = root / rel
    lines = path.read_text().splitlines()
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n")


def edit_stats(root: Path, episode: int, change: Callable[[dict], None]) -> None:
    def apply(rows):
        change(next(r for r in rows if r["episode_index"] == episode)["stats"])
        return rows

    edit_jsonl(root, fmt.EPISODES_STATS_PATH, apply)


def edit_parquet(root: Path, episode: int, change: Callable[[pa.Table], pa.Table]) -> None:
    path = root / fmt.data_relpath(episode)
    pq.write_table(change(pq.read_table(path)), path)


def set_column(table: pa.Table, name: str, values: np.ndarray | pa.Array) -> pa.Table:
    index = table.column_names.index(name)
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pa.array(values, type=table.schema.field(name).type)
    array = values
    return table.set_column(index, pa.field(name, array.type), array)


def map_column(name: str, change: Callable[[np.ndarray], np.ndarray]) -> Callable[[pa.Table], pa.Table]:
    return lambda t: set_column(t, name, change(t.column(name).to_numpy().copy()))


def reencode_video(root: Path, key: str, episode: int, *, keep_frames: int | None = None,
                   fps: int = 30, first_pts: int = 0) -> None:
    """Rewrite one episode video with libx264: fewer frames, another rate, or shifted timestamps."""
    path = root / fmt.video_relpath(key, episode)
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    frames = frames[:keep_frames] if keep_frames is not None else frames
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = first_pts + i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


# --------------------------------------------------------------------------- the faults


@dataclass(frozen=True)
class Fault:
    apply: Callable[[Path], None]
    fails: frozenset[str]  # exactly the checks that must fail


def fault(*fails: str):
    def register(apply: Callable[[Path], None]) -> Fault:
        return Fault(apply, frozenset(fails))

    return register


def _del(key):
    return lambda info: info.pop(key)


def _set(key, value):
    return lambda info: info.__setitem__(key, value)


def _set_feature(feature, key, value):
    def change(info):
        info["features"][feature][key] = value

    return change


def _set_video_info(field, value):
    def change(info):
        info["features"][TOP]["info"][field] = value

    return change


def _drop_column(name):
    return lambda t: t.drop_columns([name])


def _image_stat_scale(factor):
    def change(stats):
        stats[TOP]["max"] = (np.asarray(stats[TOP]["max"]) * factor).tolist()

    return change


FAULTS: dict[str, Fault] = {
    # ----- directories
    "missing_videos_dir": fault("dir.videos", "videos.cameras", "videos.count:" + TOP, "videos.count:" + WRIST,
                                "info.totals")(lambda r: shutil.rmtree(r / "videos")),
    "missing_meta_dir": fault("dir.meta", "info.json")(lambda r: shutil.rmtree(r / "meta")),
    "missing_data_dir": fault("dir.data", "parquet.files")(lambda r: shutil.rmtree(r / "data")),
    # ----- info.json
    "info_field_removed": fault("info.fields")(lambda r: edit_info(r, _del("total_chunks"))),
    "info_features_removed": fault("info.fields", "info.features", "parquet.schema", "info.totals")(
        lambda r: (edit_info(r, _del("features")), shutil.rmtree(r / "videos"))),
    "info_fps_wrong_type": fault("info.fields")(lambda r: edit_info(r, _set("fps", "30"))),
    "info_total_bool": fault("info.fields")(lambda r: edit_info(r, _set("total_tasks", True))),
    "info_old_version": fault("info.fields")(lambda r: edit_info(r, _set("codebase_version", "v2.0"))),
    "info_splits_wrong": fault("info.fields")(lambda r: edit_info(r, _set("splits", {"train": "0:1"}))),
    "info_data_path_wrong": fault("info.fields")(
        lambda r: edit_info(r, _set("data_path", "data/episode_{episode_index:06d}.parquet"))),
    "info_total_frames_wrong": fault("info.totals")(lambda r: edit_info(r, lambda i: i.update(total_frames=44))),
    "info_total_episodes_wrong": fault("info.totals", "info.fields")(
        lambda r: edit_info(r, lambda i: i.update(total_episodes=3))),  # splits says 0:2
    "info_total_videos_wrong": fault("info.totals")(lambda r: edit_info(r, _set("total_videos", 2))),
    "feature_names_missing": fault("info.features")(lambda r: edit_info(r, _set_feature("action", "names", None))),
    "video_feature_names_wrong": fault("info.features")(
        lambda r: edit_info(r, _set_feature(TOP, "names", ["h", "w", "c"]))),
    "bookkeeping_feature_retyped": fault("info.features", "parquet.types")(
        lambda r: edit_info(r, _set_feature("index", "dtype", "int32"))),
    "video_info_block_missing": fault("info.video_info")(
        lambda r: edit_info(r, lambda i: i["features"][TOP].pop("info"))),
    "video_info_field_missing": fault("info.video_info")(
        lambda r: edit_info(r, lambda i: i["features"][TOP]["info"].pop("video.pix_fmt"))),
    "video_info_codec_mismatch": fault("videos.info")(lambda r: edit_info(r, _set_video_info("video.codec", "av1"))),
    "video_info_size_mismatch": fault("info.video_info", "videos.info")(
        lambda r: edit_info(r, _set_video_info("video.width", 640))),
    "video_info_fps_wrong": fault("info.video_info")(lambda r: edit_info(r, _set_video_info("video.fps", 25))),
    "video_info_audio_wrong_type": fault("info.video_info")(
        lambda r: edit_info(r, _set_video_info("has_audio", "no"))),
    # ----- JSONL metadata
    # Episode 1 is then unknown: its files are orphans and info.json counts one episode too many.
    "episodes_bad_jsonl_line": fault("episodes.jsonl", "info.totals", "parquet.files", "episodes_stats.jsonl",
                                     "videos.count:" + TOP, "videos.count:" + WRIST)(
        lambda r: replace_line(r, fmt.EPISODES_PATH, 2, '{"episode_index": 1, "tasks": ["place"], "length": ')),
    "tasks_bad_jsonl_line": fault("tasks.jsonl", "episodes.tasks", "parquet.task_index", "info.totals")(
        lambda r: replace_line(r, fmt.TASKS_PATH, 2, "not json")),
    "stats_bad_jsonl_line": fault("episodes_stats.jsonl")(
        lambda r: replace_line(r, fmt.EPISODES_STATS_PATH, 1, "{")),
    "episode_index_out_of_order": fault("episodes.jsonl")(
        lambda r: edit_jsonl(r, fmt.EPISODES_PATH, lambda rows: [dict(rows[0], episode_index=5), rows[1]])),
    "episode_length_wrong": fault("parquet.lengths", "stats.values")(
        lambda r: edit_jsonl(r, fmt.EPISODES_PATH, lambda rows: [dict(rows[0], length=19), rows[1]])),
    "episode_task_unknown": fault("episodes.tasks", "parquet.task_index")(
        lambda r: edit_jsonl(r, fmt.EPISODES_PATH, lambda rows: [dict(rows[0], tasks=["fly"]), rows[1]])),
    # ----- parquet
    "parquet_column_dropped": fault("parquet.schema")(lambda r: edit_parquet(r, 1, _drop_column("observation.state"))),
    "parquet_extra_column": fault("parquet.schema")(
        lambda r: edit_parquet(r, 0, lambda t: t.append_column("next.done", pa.array([False] * t.num_rows)))),
    "parquet_vector_float64": fault("parquet.types")(
        lambda r: edit_parquet(r, 0, lambda t: set_column(t, "action", t.column("action").cast(pa.list_(pa.float64(), 6))))),
    "parquet_vector_variable_list": fault("parquet.types")(
        lambda r: edit_parquet(r, 0, lambda t: set_column(t, "action", t.column("action").cast(pa.list_(pa.float32()))))),
    "parquet_index_int32": fault("parquet.types")(
        lambda r: edit_parquet(r, 1, lambda t: set_column(t, "index", t.column("index").cast(pa.int32())))),
    "parquet_timestamp_float64": fault("parquet.types")(
        lambda r: edit_parquet(r, 1, lambda t: set_column(t, "timestamp", t.column("timestamp").cast(pa.float64())))),
    "parquet_unreadable": fault("parquet.files")(
        lambda r: (r / fmt.data_relpath(1)).write_bytes(b"PAR1 garbage")),
    "parquet_orphan_episode": fault("parquet.files")(
        lambda r: shutil.copy(r / fmt.data_relpath(1), r / fmt.data_relpath(2))),
    "timestamp_jitter_3ms": fault("parquet.timestamps")(
        lambda r: edit_parquet(r, 1, map_column("timestamp", lambda ts: ts + np.where(np.arange(len(ts)) == 10, 0.003, 0)))),
    "timestamp_not_from_zero": fault("parquet.timestamps", "stats.values")(
        lambda r: edit_parquet(r, 0, map_column("timestamp", lambda ts: ts + 0.5))),
    "timestamp_drift": fault("parquet.timestamps", "stats.values")(  # every step 50 µs long: passes LeRobot's step check
        lambda r: edit_parquet(r, 0, map_column("timestamp", lambda ts: np.arange(len(ts)) * (1 / 30 + 5e-5)))),
    "frame_index_gap": fault("parquet.frame_index", "stats.values")(
        lambda r: edit_parquet(r, 0, map_column("frame_index", lambda fi: fi + (fi >= 7)))),
    "index_discontinuity_across_episodes": fault("parquet.index", "stats.values")(
        lambda r: edit_parquet(r, 1, map_column("index", lambda ix: ix + 1))),
    "episode_index_column_wrong": fault("parquet.episode_index", "stats.values")(
        lambda r: edit_parquet(r, 1, map_column("episode_index", lambda ei: ei * 0))),
    "task_index_unknown": fault("parquet.task_index", "stats.values")(
        lambda r: edit_parquet(r, 0, map_column("task_index", lambda ti: ti + 7))),
    # ----- videos
    "video_fewer_frames": fault("videos.frames")(lambda r: reencode_video(r, TOP, 1, keep_frames=24)),
    "video_fps_mismatch": fault("videos.fps")(lambda r: reencode_video(r, WRIST, 0, fps=25)),
    "video_timestamps_shifted": fault("videos.fps")(lambda r: reencode_video(r, TOP, 0, first_pts=1)),
    "video_missing": fault("videos.count:" + WRIST, "info.totals")(
        lambda r: (r / fmt.video_relpath(WRIST, 1)).unlink()),
    "video_undecodable": fault("videos.frames")(lambda r: (r / fmt.video_relpath(TOP, 0)).write_bytes(b"\0" * 100)),
    "video_orphan": fault("videos.count:" + TOP, "info.totals")(
        lambda r: shutil.copy(r / fmt.video_relpath(TOP, 1), r / fmt.video_relpath(TOP, 2))),
    "camera_dir_unknown": fault("videos.cameras", "info.totals")(
        lambda r: shutil.copytree(r / "videos/chunk-000" / WRIST, r / "videos/chunk-000/observation.images.side")),
    # ----- stats
    "stats_feature_missing": fault("stats.features")(lambda r: edit_stats(r, 1, lambda s: s.pop("observation.state"))),
    "stats_field_missing": fault("stats.features")(lambda r: edit_stats(r, 0, lambda s: s["action"].pop("std"))),
    "stats_image_shape_wrong": fault("stats.shapes")(
        lambda r: edit_stats(r, 0, lambda s: s[TOP].update(mean=np.asarray(s[TOP]["mean"]).reshape(3).tolist()))),
    "stats_vector_shape_wrong": fault("stats.shapes")(
        lambda r: edit_stats(r, 1, lambda s: s["action"].update(min=s["action"]["min"][:5]))),
    "stats_image_out_of_range": fault("stats.image_range")(lambda r: edit_stats(r, 1, _image_stat_scale(255))),
    "stats_count_wrong": fault("stats.values")(lambda r: edit_stats(r, 0, lambda s: s["action"].update(count=[3]))),
    "stats_extrema_wrong": fault("stats.values")(
        lambda r: edit_stats(r, 0, lambda s: s["observation.state"].update(max=[9.0] * 6))),
    # ----- working files
    "stray_tmp_file": fault("files.tmp")(lambda r: (r / "meta" / "info.json.tmp").write_text("{")),
    "staging_not_empty": fault("files.staging")(
        lambda r: ((r / fmt.STAGING_DIR / "x").mkdir(parents=True), (r / fmt.STAGING_DIR / "x" / "data.parquet").write_bytes(b"1"))),
}
