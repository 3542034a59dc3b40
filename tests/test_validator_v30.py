"""The v3.0 validator: a dataset our writer packs passes every check, and each corruption
breaks exactly the check named for it (through the validator CLI for the pass case)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataset_factory import write_dataset
from e2e_helpers import assert_valid

from operating_platform.dataset.v30 import layout
from operating_platform.dataset.v30.remux import cut_video
from operating_platform.dataset.v30.validate import validate_v30

EPISODES_FILE = "meta/episodes/chunk-000/file-000.parquet"
DATA_FILE = "data/chunk-000/file-000.parquet"
TOP_VIDEO = "videos/observation.images.top/chunk-000/file-000.mp4"


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("v30") / "ds", lengths=(20, 25, 15), codebase_version="v3.0")


@pytest.fixture
def ds(packed, tmp_path) -> Path:
    root = tmp_path / "ds"
    shutil.copytree(packed, root)
    return root


def edit_episodes(root: Path, change) -> None:
    rows = pq.read_table(root / EPISODES_FILE).to_pylist()
    change(rows)
    pq.write_table(pa.Table.from_pylist(rows), root / EPISODES_FILE)


def edit_info(root: Path, change) -> None:
    info = json.loads((root / "meta/info.json").read_text())
    change(info)
    (root / "meta/info.json").write_text(json.dumps(info))


def failed(root: Path) -> list[str]:
    return [c.name for c in validate_v30(root).failed]


def test_packed_dataset_passes_every_check(packed):
    assert_valid(packed)
    report = validate_v30(packed)
    assert report.passed and len(report.checks) >= 13 and not report.warnings


def _shift_episode_1(rows):
    rows[1]["dataset_from_index"] += 1
    rows[1]["dataset_to_index"] += 1


def _bad_timestamp(root):
    table = pq.read_table(root / DATA_FILE)
    ts = table.column("timestamp").to_pylist()
    ts[30] += 0.01
    pq.write_table(table.set_column(table.column_names.index("timestamp"), "timestamp", pa.array(ts, pa.float32())), root / DATA_FILE)


def _fewer_frames(root):
    cut_video(root / TOP_VIDEO, 0, 58, root / "short.mp4", 30)
    (root / "short.mp4").replace(root / TOP_VIDEO)


def _drop_task(root):
    pq.write_table(layout.tasks_table(["pick the cube"]), root / layout.TASKS_PATH)


def _stats_json(root):
    stats = json.loads((root / layout.STATS_PATH).read_text())
    stats["action"]["mean"][0] += 1.0
    (root / layout.STATS_PATH).write_text(json.dumps(stats))


CORRUPTIONS = {
    "info.fields": lambda r: edit_info(r, lambda i: i.update(data_path="data/{episode_index}.parquet")),
    "meta.tasks": _drop_task,
    "meta.episodes": lambda r: edit_episodes(r, lambda rows: [row.pop("data/file_index") for row in rows]),
    "episodes.continuity": lambda r: edit_episodes(r, _shift_episode_1),
    "totals": lambda r: edit_info(r, lambda i: i.update(total_frames=i["total_frames"] + 1)),
    "parquet.schema": lambda r: (r / DATA_FILE).write_bytes((r / DATA_FILE).read_bytes()[:400]),  # footer-less
    "parquet.rows": _bad_timestamp,
    "videos.frames": _fewer_frames,
    "videos.timestamps": lambda r: edit_episodes(r, lambda rows: rows[1].update(
        {"videos/observation.images.wrist/to_timestamp": rows[1]["videos/observation.images.wrist/to_timestamp"] + 0.1})),
    "videos.info": lambda r: edit_info(r, lambda i: i["features"]["observation.images.top"]["info"].update({"video.codec": "av1"})),
    "stats.episodes": lambda r: edit_episodes(r, lambda rows: rows[0].update({"stats/action/max": [9.0] * 6})),
    "stats.global": _stats_json,
    "files.stray": lambda r: shutil.copy(r / DATA_FILE, r / "data/chunk-000/file-001.parquet"),
    "files.pack": lambda r: ((r / ".pack").mkdir(), (r / ".pack/journal.json").write_text("{}")),
}


@pytest.mark.parametrize("check", sorted(CORRUPTIONS))
def test_each_corruption_fails_its_check(ds, check):
    CORRUPTIONS[check](ds)
    assert check in failed(ds), f"{check} should fail; failed: {failed(ds)}"


def test_unpacked_and_spooled_episodes_are_warned_about_not_failed(ds):
    from operating_platform.dataset import LeRobotDataset

    from dataset_factory import record_episode

    store = LeRobotDataset.open(ds / layout.STORE_DIR, use_async_saver=False, vcodec="libx264")  # commits, never packs
    record_episode(store, 3, 10)
    store.save_episode()
    store.close()
    report = validate_v30(ds)
    assert report.passed and [c.name for c in report.warnings] == ["files.pending"]
    assert "not packed yet" in report.warnings[0].message
