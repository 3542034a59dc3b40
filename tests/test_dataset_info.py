"""DatasetInfo (dataset/info.py): meta/info.json written exactly as the writers always wrote it, for
both versions, and every malformed field refused with one error naming the file and the field."""

from __future__ import annotations

import json
import math

import pytest
from dataset_factory import write_dataset
from validator_faults import _del, _set, _set_feature

from operating_platform.dataset import LeRobotDataset
from operating_platform.dataset import format as fmt
from operating_platform.dataset.format import DatasetFormatError, build_features
from operating_platform.dataset.info import DatasetInfo, Feature, parquet_columns, vector_keys

V21_TEMPLATES = {
    "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
    "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
}
V30_TEMPLATES = {
    "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
    "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
}
FEATURES = {
    "action": {"dtype": "float32", "shape": [2], "names": ["a", "b"]},
    "observation.state": {"dtype": "float32", "shape": [2], "names": ["a", "b"]},
    "observation.images.top": {"dtype": "video", "shape": [48, 64, 3], "names": ["height", "width", "channels"]},
    **{k: {"dtype": t, "shape": [1], "names": None}
       for k, t in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                    ("index", "int64"), ("task_index", "int64"))},
}
# What the writers wrote for a new dataset before DatasetInfo existed (key order included).
V21_NEW = {"codebase_version": "v2.1", "robot_type": "so101", "total_episodes": 0, "total_frames": 0, "total_tasks": 0,
           "total_videos": 0, "total_chunks": 0, "chunks_size": 1000, "fps": 30, "splits": {}, **V21_TEMPLATES,
           "features": FEATURES}
V30_NEW = {"codebase_version": "v3.0", "robot_type": "so101", "total_episodes": 0, "total_frames": 0, "total_tasks": 0,
           "chunks_size": 1000, "fps": 30, "splits": {}, **V30_TEMPLATES, "features": FEATURES,
           "data_files_size_in_mb": 100, "video_files_size_in_mb": 200}


def dumped(obj) -> str:
    return json.dumps(obj, indent=4)  # order-sensitive: what reaches the file


@pytest.mark.parametrize("version,expected", [("v2.1", V21_NEW), ("v3.0", V30_NEW)])
def test_a_new_dataset_info_is_what_the_writers_wrote(version, expected):
    info = DatasetInfo.new(version, 30, build_features(["a", "b"], {"top": (48, 64)}), "so101")
    assert dumped(info.to_json()) == dumped(expected)
    assert dumped(DatasetInfo.from_json(expected).to_json()) == dumped(expected)


def test_a_dataset_without_cameras_has_no_video_path():
    info = DatasetInfo.new("v3.0", 30, build_features(["a"]), None, 500, 1.5, 7)
    raw = info.to_json()
    assert raw["video_path"] is None and raw["robot_type"] is None and raw["chunks_size"] == 500
    assert (raw["data_files_size_in_mb"], raw["video_files_size_in_mb"]) == (1.5, 7)


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_a_recorded_dataset_round_trips_byte_for_byte(tmp_path, version):
    root = write_dataset(tmp_path / "ds", lengths=(5, 6), codebase_version=version)
    on_disk = (root / fmt.INFO_PATH).read_bytes()
    info = DatasetInfo.load(root, version)
    assert info.total_episodes == 2 and info.total_frames == 11 and info.features["observation.images.top"].info
    out = tmp_path / "copy"
    info.write(out)
    assert (out / fmt.INFO_PATH).read_bytes() == on_disk


def test_with_totals_returns_a_new_value_with_the_counts_that_follow():
    empty = DatasetInfo.new("v2.1", 30, FEATURES, "so101", chunks_size=2)
    full = empty.with_totals(3, 40, 2)
    assert empty.total_episodes == 0 and empty.splits == {}
    assert (full.total_episodes, full.total_frames, full.total_tasks, full.splits) == (3, 40, 2, {"train": "0:3"})
    assert (full.total_videos, full.total_chunks) == (3, math.ceil(3 / 2))  # one camera
    v30 = DatasetInfo.new("v3.0", 30, FEATURES, "so101").with_totals(3, 40, 2).to_json()
    assert "total_videos" not in v30 and "total_chunks" not in v30 and v30["splits"] == {"train": "0:3"}


def test_paths_come_from_the_dataset_templates():
    v21 = DatasetInfo.new("v2.1", 30, FEATURES, None, chunks_size=10)
    assert v21.data_path(12) == "data/chunk-001/episode_000012.parquet"
    assert v21.video_path("observation.images.top", 3) == "videos/chunk-000/observation.images.top/episode_000003.mp4"
    v30 = DatasetInfo.new("v3.0", 30, FEATURES, None)
    assert v30.data_path(chunk=1, file=2) == "data/chunk-001/file-002.parquet"
    assert v30.video_path("observation.images.top", chunk=0, file=4) == \
        "videos/observation.images.top/chunk-000/file-004.mp4"
    with pytest.raises(TypeError):
        v30.data_path(3)
    with pytest.raises(TypeError):
        v21.data_path(chunk=0, file=0)


def test_one_rule_says_which_features_are_parquet_columns():
    features = {k: Feature.from_json(k, ft) for k, ft in FEATURES.items()}
    features["note"] = Feature("string", (1,))
    features["snapshot"] = Feature("image", (8, 8, 3))
    assert parquet_columns(features) == [k for k in features if k not in ("observation.images.top", "snapshot")]
    assert vector_keys(features) == ["action", "observation.state"]


def test_keys_written_by_others_are_kept():
    raw = {**V21_NEW, "features": {**FEATURES, "action": {**FEATURES["action"], "fps": 30}}, "license": "mit"}
    assert DatasetInfo.from_json(raw).to_json() == raw


MALFORMED = {
    "codebase_version missing": (_del("codebase_version"), "codebase_version"),
    "unsupported version": (_set("codebase_version", "v2.0"), "codebase_version 'v2.0' is not a supported"),
    "fps missing": (_del("fps"), "field 'fps' missing"),
    "fps a string": (_set("fps", "30"), "field 'fps' is '30' (str), expected int"),
    "fps zero": (_set("fps", 0), "fps is 0, expected > 0"),
    "chunks_size negative": (_set("chunks_size", -1), "chunks_size is -1, expected > 0"),
    "robot_type a number": (_set("robot_type", 5), "field 'robot_type' is 5"),
    "total_episodes a bool": (_set("total_episodes", True), "field 'total_episodes' is True (bool)"),
    "total_frames negative": (_set("total_frames", -2), "total_frames is -2, expected >= 0"),
    "total_tasks missing": (_del("total_tasks"), "field 'total_tasks' missing"),
    "total_videos missing (v2.1)": (_del("total_videos"), "field 'total_videos' missing"),
    "total_chunks a float": (_set("total_chunks", 1.0), "field 'total_chunks' is 1.0 (float)"),
    "splits a list": (_set("splits", []), "field 'splits' is [] (list), expected dict"),
    "data_path missing": (_del("data_path"), "field 'data_path' missing"),
    "video_path null with cameras": (_set("video_path", None), "field 'video_path' is null"),
    "features missing": (_del("features"), "field 'features' missing"),
    "features empty": (_set("features", {}), "'features' is missing or empty"),
    "feature without dtype": (_set_feature("action", "dtype", None), "feature 'action' has no 'dtype'"),
    "feature shape not a list": (_set_feature("action", "shape", "6"), "feature 'action': shape '6' is not a list"),
    "feature shape zero": (_set_feature("action", "shape", [0]), "feature 'action': shape [0] is not a list"),
    "feature names a number": (_set_feature("action", "names", 3), "feature 'action': names 3 is not a list"),
    "feature info a string": (_set_feature("observation.images.top", "info", "x"),
                              "feature 'observation.images.top': info 'x' is not an object"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_each_malformed_field_is_one_clear_error_naming_file_and_field(tmp_path, case):
    change, message = MALFORMED[case]
    raw = json.loads(json.dumps(V21_NEW))
    change(raw)
    path = tmp_path / fmt.INFO_PATH
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(raw))
    with pytest.raises(DatasetFormatError) as caught:
        DatasetInfo.load(tmp_path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)


def test_v30_size_limits_are_required_and_positive():
    for change, message in ((_del("data_files_size_in_mb"), "field 'data_files_size_in_mb' missing"),
                            (_set("video_files_size_in_mb", 0), "video_files_size_in_mb is 0, expected > 0"),
                            (_set("data_files_size_in_mb", "100"), "field 'data_files_size_in_mb' is '100'")):
        raw = json.loads(json.dumps(V30_NEW))
        change(raw)
        with pytest.raises(DatasetFormatError, match=message):
            DatasetInfo.from_json(raw, "x/meta/info.json")


def test_the_wrong_version_and_an_unreadable_file_are_named(tmp_path):
    (tmp_path / "meta").mkdir()
    with pytest.raises(DatasetFormatError, match="info.json: missing"):
        DatasetInfo.load(tmp_path)
    (tmp_path / fmt.INFO_PATH).write_text("{")
    with pytest.raises(DatasetFormatError, match="invalid JSON"):
        DatasetInfo.load(tmp_path)
    (tmp_path / fmt.INFO_PATH).write_text("[]")
    with pytest.raises(DatasetFormatError, match="top level is list, expected an object"):
        DatasetInfo.load(tmp_path)
    (tmp_path / fmt.INFO_PATH).write_text(json.dumps(V21_NEW))
    with pytest.raises(DatasetFormatError, match="codebase_version is 'v2.1', expected 'v3.0'"):
        DatasetInfo.load(tmp_path, "v3.0")


def test_string_features_are_refused_when_created(tmp_path):
    features = {**build_features(["a"]), "note": {"dtype": "string", "shape": [1], "names": None}}
    with pytest.raises(DatasetFormatError, match="string features"):
        LeRobotDataset.create("x", root=tmp_path / "ds", fps=30, features=features, use_async_saver=False)
    assert not (tmp_path / "ds").exists()
