"""Child process: read a dataset with LeRobot 0.4.x's own v3.0 `LeRobotDataset`, unconverted.

Run with lerobot 0.4.x first on the path (lerobot_env.converter_env). Usage:
    python lerobot_v30_read.py ROOT OUT.npz SPEC.json
SPEC: {"items": [global indices], "delta_timestamps": {...}, "delta_items": [...],
       "episodes_subset": [episode indices], "stats_episodes": [{"start", "length", "images": {key: [png paths]}}]}
OUT.npz gets every frame's non-video columns, full items (videos decoded) through LeRobot's
__getitem__, delta_timestamps items with their padding masks, LeRobot's view of the metadata,
and the statistics LeRobot's compute_episode_stats / aggregate_stats give for the recorded frames.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import lerobot_env

VECTOR_KEYS = ("action", "observation.state", "timestamp", "frame_index", "episode_index", "index", "task_index")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    return np.asarray(obj).tolist()


def main(root: Path, out: Path, spec: dict) -> None:
    LeRobotDataset = lerobot_env.import_lerobot_dataset(lerobot_env.CONVERTER_VERSION_PREFIX)
    from lerobot.datasets.compute_stats import aggregate_stats, compute_episode_stats, get_feature_stats, sample_images

    arrays: dict[str, np.ndarray] = {}
    ds = LeRobotDataset("local/ours", root=root, video_backend="pyav")
    columns = ds.hf_dataset.with_format(None)
    for key in VECTOR_KEYS:
        arrays[f"col/{key}"] = np.asarray(columns[key])
    items = [ds[i] for i in spec["items"]]
    for key in (*VECTOR_KEYS, *ds.meta.video_keys):
        arrays[f"item/{key}"] = np.stack([item[key].numpy() for item in items])
    arrays["item/task"] = np.array([item["task"] for item in items])
    episodes = ds.meta.episodes.with_format(None)
    meta = {
        "info": ds.meta.info, "len": len(ds), "num_episodes": ds.num_episodes, "num_frames": ds.num_frames,
        "video_keys": ds.meta.video_keys, "camera_keys": ds.meta.camera_keys,
        "tasks": {int(row.task_index): task for task, row in ds.meta.tasks.iterrows()},
        "episodes": [dict(row) for row in episodes],
        "stats": _jsonable(ds.meta.stats),
    }

    if spec.get("delta_items"):
        delta_ds = LeRobotDataset("local/ours", root=root, video_backend="pyav", delta_timestamps=spec["delta_timestamps"])
        delta_items = [delta_ds[i] for i in spec["delta_items"]]
        for key in delta_items[0]:
            if key != "task" and hasattr(delta_items[0][key], "numpy"):
                arrays[f"delta/{key}"] = np.stack([item[key].numpy() for item in delta_items])

    if spec.get("episodes_subset"):
        subset = LeRobotDataset("local/ours", root=root, video_backend="pyav", episodes=spec["episodes_subset"])
        meta["subset"] = {"len": len(subset), "first": {k: subset[0][k].tolist() for k in VECTOR_KEYS},
                          "last": {k: subset[len(subset) - 1][k].tolist() for k in VECTOR_KEYS}}

    computed = []
    for ep in spec.get("stats_episodes", []):
        rows = columns.select(range(ep["start"], ep["start"] + ep["length"]))
        data = {key: np.asarray(rows[key], dtype=np.float64 if key in ("action", "observation.state") else None)
                for key in VECTOR_KEYS}
        stats = compute_episode_stats(data, ds.features)
        for key, paths in ep["images"].items():
            # compute_episode_stats(paths) squares the uint8 sample in RunningQuantileStats, which wraps
            # around (0.4.4: image std comes out 0): the same sampling and reduction, on floats.
            sample = sample_images(paths).astype(np.float64)
            by_stat = get_feature_stats(sample, axis=(0, 2, 3), keepdims=True)
            stats[key] = {k: v if k == "count" else np.squeeze(v / 255.0, axis=0) for k, v in by_stat.items()}
        computed.append(stats)
    meta["lerobot_episode_stats"] = [_jsonable(s) for s in computed]
    meta["lerobot_aggregate_stats"] = _jsonable(aggregate_stats(computed)) if computed else None
    arrays["meta"] = np.array(json.dumps(meta, default=_jsonable))
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), json.loads(Path(sys.argv[3]).read_text()))
