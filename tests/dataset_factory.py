"""Small real datasets for tests: deterministic frames, real writer, real encoders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from operating_platform.dataset import LeRobotDataset, build_features

JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
CAMERAS = {"top": (48, 64), "wrist": (48, 64)}


def features(cameras=CAMERAS):
    return build_features(JOINTS, cameras)


def make_frame(episode: int, i: int, cameras=CAMERAS) -> dict:
    """Frame content is a pure function of (episode, i), so tests can recompute what was saved."""
    t = episode * 1000 + i
    frame = {
        "observation.state": (np.arange(6, dtype=np.float32) + 0.01 * t).astype(np.float32),
        "action": (np.arange(6, dtype=np.float32) * -1 - 0.01 * t).astype(np.float32),
    }
    for cam, (h, w) in cameras.items():
        yy, xx = np.mgrid[0:h, 0:w]
        base = (xx * 3 + yy * 2 + i * 4 + episode * 40 + len(cam) * 17) % 256
        frame[f"observation.images.{cam}"] = np.stack([base, (base + 85) % 256, (255 - base)], -1).astype(np.uint8)
    return frame


def create(root: Path, **kwargs) -> LeRobotDataset:
    kwargs.setdefault("vcodec", "libx264")
    kwargs.setdefault("use_async_saver", False)
    kwargs.setdefault("codebase_version", "v2.1")  # the commit machinery's own tests; v3.0 tests ask for it
    cameras = kwargs.pop("cameras", CAMERAS)
    return LeRobotDataset.create("test/dataset", root=root, fps=30, features=features(cameras), robot_type="so101", **kwargs)


def record_episode(ds: LeRobotDataset, episode: int, length: int, task: str = "pick the cube", cameras=CAMERAS) -> None:
    for i in range(length):
        ds.add_frame(make_frame(episode, i, cameras), task=task)


def write_dataset(root: Path, lengths=(20, 25), **kwargs) -> Path:
    ds = create(root, **kwargs)
    for ep, n in enumerate(lengths):
        record_episode(ds, ep, n, task="pick the cube" if ep % 2 == 0 else "place the cube")
        ds.save_episode()
    ds.close()
    return root


def expected_states_for(episode: int, length: int) -> np.ndarray:
    """The observation.state column `record_episode(ds, episode, length)` writes."""
    return np.stack([make_frame(episode, i)["observation.state"] for i in range(length)])


def committed_table(root: Path, episode: int) -> pa.Table:
    """A committed episode's rows, read straight from its parquet (v2.1) or shared parquets (v3.0)."""
    info = json.loads((root / "meta/info.json").read_text())
    if info["codebase_version"] == "v2.1":
        return pq.read_table(root / f"data/chunk-000/episode_{episode:06d}.parquet")
    table = pa.concat_tables([pq.read_table(p) for p in sorted((root / "data").glob("*/*.parquet"))])
    return table.filter(pc.equal(table.column("episode_index"), episode))


def committed_episodes(root: Path) -> list[dict]:
    """Episode metadata rows (episode_index, tasks, length, ...) in either format."""
    if (root / "meta/episodes.jsonl").exists():
        return [json.loads(line) for line in (root / "meta/episodes.jsonl").read_text().splitlines()]
    return pa.concat_tables([pq.read_table(p) for p in sorted((root / "meta/episodes").glob("*/*.parquet"))]).to_pylist()


def committed_states(root: Path, episode: int) -> np.ndarray:
    """The observation.state column of a committed episode, read back from its parquet."""
    table = committed_table(root, episode)
    return np.array(table.column("observation.state").to_pylist(), dtype=np.float32)
