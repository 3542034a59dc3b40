"""Child process: convert a v2.1 dataset with LeRobot 0.4.x's own converter, then read it back.

Run with lerobot 0.4.x first on the path (lerobot_env.converter_env). Usage:
    python lerobot_v30_convert.py PARENT_DIR REPO_ID OUT.npz FRAME_INDEX...
The dataset is PARENT_DIR/REPO_ID (the converter's layout); it is converted in place
(the v2.1 original is kept as REPO_ID_old). OUT.npz gets every frame's non-video columns and,
through LeRobot's item access, the listed frames with decoded camera images.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import lerobot_env

VECTOR_KEYS = ("action", "observation.state", "timestamp", "frame_index", "episode_index", "index", "task_index")


def main(parent: Path, repo_id: str, out: Path, frame_indices: list[int]) -> None:
    LeRobotDataset = lerobot_env.import_lerobot_dataset(lerobot_env.CONVERTER_VERSION_PREFIX)
    from lerobot.datasets.v30.convert_dataset_v21_to_v30 import convert_dataset

    convert_dataset(repo_id, root=parent, push_to_hub=False)
    root = parent / repo_id
    ds = LeRobotDataset(repo_id, root=root, video_backend="pyav")
    columns = ds.hf_dataset.with_format(None)
    arrays = {key: np.asarray(columns[key]) for key in VECTOR_KEYS}
    items = [ds[i] for i in frame_indices]  # full items (videos decoded) through LeRobot's __getitem__
    for key in (*VECTOR_KEYS, *ds.meta.video_keys):
        arrays[f"item/{key}"] = np.stack([item[key].numpy() for item in items])
    arrays["item/task"] = np.array([item["task"] for item in items])
    arrays["frame_indices"] = np.array(frame_indices)
    arrays["info"] = np.array(json.dumps(ds.meta.info))
    arrays["episode_lengths"] = np.array([ds.meta.episodes[e]["length"] for e in range(ds.meta.total_episodes)])
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), [int(i) for i in sys.argv[4:]])
