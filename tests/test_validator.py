"""The dataset validator catches every fault it claims to, on datasets written by the real writer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from dataset_factory import create, record_episode
from e2e_helpers import load_repo_module
from validator_faults import FAULTS, TOP, WRIST, edit_parquet

from operating_platform.dataset import format as fmt
from operating_platform.dataset.validate import DatasetPathError, probe_video, validate_dataset
from operating_platform.dataset import LeRobotDataset

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "validate_dataset_format.py"
cli = load_repo_module("scripts/validate_dataset_format.py")

JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


def record(root: Path, *, lengths=(20, 25), tasks=("pick the cube", "place the cube"), cameras=(TOP, WRIST),
           joints=JOINTS, size=(48, 64), vcodec="libx264", leave_open=0, end_last=False) -> Path:
    """Write a dataset with the real writer (sync saves). `leave_open` frames are recorded into a
    further episode that is never saved, as when the recorder is killed."""
    cams = {key.removeprefix(fmt.IMAGE_KEY_PREFIX): size for key in cameras}
    features = fmt.build_features(joints, cams)
    ds = LeRobotDataset.create("test/validator", root=root, fps=30, features=features, robot_type="so101",
                               use_async_saver=False, vcodec=vcodec, codebase_version="v2.1")
    rng = np.random.default_rng(len(lengths))

    def add(i, task):
        frame = {"observation.state": rng.uniform(-1, 1, len(joints)).astype(np.float32),
                 "action": rng.uniform(-1, 1, len(joints)).astype(np.float32)}
        for key in cameras:
            frame[key] = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        ds.add_frame(frame, task=task)

    for ep, n in enumerate(lengths):
        for i in range(n):
            add(i, tasks[ep % len(tasks)])
        ds.save_episode()
    for i in range(leave_open):
        add(i, tasks[0])
    if end_last:
        ds.episode_buffer.end()  # saved by the operator, but the process dies before the commit
    ds.close()
    return root


@pytest.fixture(scope="session")
def pristine(tmp_path_factory) -> Path:
    return record(tmp_path_factory.mktemp("pristine") / "ds")


@pytest.fixture
def dataset(pristine, tmp_path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "ds"))


def run_cli(*args) -> int:
    return cli.main([str(a) for a in args])


# --------------------------------------------------------------------------- valid datasets


def test_valid_dataset_passes(dataset, capsys):
    report = validate_dataset(dataset)
    assert report.passed, report.format_text()
    names = {c.name for c in report.checks}
    assert {"dir.data", "info.fields", "info.features", "info.video_info", "info.totals", "episodes.jsonl",
            "tasks.jsonl", "episodes_stats.jsonl", "parquet.schema", "parquet.types", "parquet.timestamps",
            "parquet.index", "videos.frames", "videos.fps", "videos.info", "stats.shapes", "stats.image_range",
            "files.tmp", "files.staging", f"videos.count:{TOP}", f"videos.count:{WRIST}"} <= names
    assert run_cli("--target", dataset) == 0
    out = capsys.readouterr().out
    assert "Validating directory structure...\n  ✓ Directory exists: data/" in out
    assert f"  ✓ Camera {TOP}: 2 video(s) found" in out
    assert out.rstrip().endswith("✓ VALIDATION PASSED: Dataset format is compatible")
    assert f"Validations: {len(report.checks)}/{len(report.checks)} passed" in out


def test_av1_dataset_with_default_codec_passes(tmp_path):
    root = record(tmp_path / "av1", lengths=(12, 9), vcodec=fmt.DEFAULT_VIDEO_CODEC)
    report = validate_dataset(root)
    assert report.passed, report.format_text()
    assert json.loads((root / fmt.INFO_PATH).read_text())["features"][TOP]["info"]["video.codec"] == "av1"


def test_valid_dataset_against_itself_as_reference(dataset, pristine, capsys):
    assert run_cli("--reference", pristine, "--target", dataset) == 0
    out = capsys.readouterr().out
    for line in ("✓ info.json structure matches", "✓ Parquet schema matches (7 columns)", "✓ Column data types match",
                 f"✓ Camera directories match: {{'{TOP}', '{WRIST}'}}"):
        assert line in out or line.replace(f"'{TOP}', '{WRIST}'", f"'{WRIST}', '{TOP}'") in out, out


def test_verbose_lists_each_episode_and_video(dataset, capsys):
    assert run_cli("--target", dataset, "--verbose") == 0
    out = capsys.readouterr().out
    assert "episode 0: 20 frames" in out and "episode 1: 25 frames" in out
    assert f"{fmt.video_relpath(WRIST, 1)}: 25 frames, h264 yuv420p 64x48 @ 30 fps" in out


def test_json_report(dataset, capsys):
    FAULTS["video_fewer_frames"].apply(dataset)
    assert run_cli("--target", dataset, "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is False
    failed = [c for c in report["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["videos.frames"]
    assert failed[0]["group"] == "video files"
    assert "24 decoded frames, parquet has 25 rows" in failed[0]["message"]
    assert report["validations_passed"] == report["validations_total"] - 1


# --------------------------------------------------------------------------- one fault at a time


@pytest.mark.parametrize("fault_name", sorted(FAULTS))
def test_fault_is_caught(fault_name, dataset, capsys):
    fault = FAULTS[fault_name]
    fault.apply(dataset)
    report = validate_dataset(dataset)
    failed = {c.name for c in report.failed}
    assert failed == fault.fails, report.format_text(verbose=True)
    assert run_cli("--target", dataset) == 1
    out = capsys.readouterr().out
    assert "✗ VALIDATION FAILED" in out
    for check in report.failed:
        assert f"  ✗ {check.message}" in out


def test_fault_messages_name_file_and_value(dataset):
    FAULTS["timestamp_jitter_3ms"].apply(dataset)
    FAULTS["info_total_bool"].apply(dataset)
    report = validate_dataset(dataset)
    assert report.check("parquet.timestamps").message.startswith(
        "episode 1: timestamp[10] - timestamp[9] = 0.036333 s, expected 0.033333 ± 0.0001 s (2 bad step(s))")
    assert "meta/info.json: field 'total_tasks' is True (bool), expected int" in report.check("info.fields").message


def test_unusable_fps_skips_grid_checks_instead_of_passing_them(dataset):
    FAULTS["info_fps_wrong_type"].apply(dataset)
    report = validate_dataset(dataset)
    names = {c.name for c in report.checks}
    assert "parquet.timestamps" not in names and "videos.fps" not in names
    assert "meta/info.json: field 'fps' is '30' (str), expected int" in report.check("info.fields").message


def test_missing_info_json_fails_without_crashing(dataset, capsys):
    (dataset / fmt.INFO_PATH).unlink()
    report = validate_dataset(dataset)
    assert {c.name for c in report.failed} == {"info.json"}
    assert "meta/info.json missing" in report.check("info.json").message
    assert run_cli("--target", dataset) == 1


def test_corrupt_info_json_fails(dataset):
    (dataset / fmt.INFO_PATH).write_text('{"codebase_version": "v2.1",')
    assert {c.name for c in validate_dataset(dataset).failed} == {"info.json"}


def test_many_problems_are_all_listed_in_verbose(dataset, capsys):
    for ep in (0, 1):
        edit_parquet(dataset, ep, lambda t: t.drop_columns(["action"]))
    report = validate_dataset(dataset)
    assert len(report.check("parquet.schema").details) == 2
    assert "(and 1 more)" in report.check("parquet.schema").message


WRONG_VALUES = [None, [], "x", -1, True, {"a": 1}]


def test_any_wrong_value_in_info_json_is_reported_not_crashed_on(dataset):
    """Each field of info.json (and of a feature) replaced by values of every wrong kind: the
    report names the problem in an ordinary check; no check step gives up with an exception."""
    original = json.loads((dataset / fmt.INFO_PATH).read_text())
    paths = [(key,) for key in original] + [("features", f, k) for f in ("action", TOP) for k in original["features"][f]]
    paths += [("features", TOP, "info", k) for k in original["features"][TOP]["info"]]
    for path in paths:
        for value in WRONG_VALUES:
            info = json.loads(json.dumps(original))
            parent = info
            for key in path[:-1]:
                parent = parent[key]
            if parent[path[-1]] == value:
                continue
            parent[path[-1]] = value
            (dataset / fmt.INFO_PATH).write_text(json.dumps(info))
            report = validate_dataset(dataset)
            crashed = [c.message for c in report.failed if c.name.endswith(".error")]
            assert not crashed, (path, value, crashed)
            if path[-1] not in ("robot_type", "video.channels") and not (path[-1] == "names" and value is None
                                                                          and path[1] != "action"):
                assert not report.passed, (path, value)


# --------------------------------------------------------------------------- crash leftovers


def test_uncommitted_spool_is_a_warning_with_recovery_hint(pristine, tmp_path, capsys):
    root = Path(shutil.copytree(pristine, tmp_path / "ds"))
    ds = LeRobotDataset.open(root, use_async_saver=False, vcodec="libx264")
    ds.close()
    # A recorder that died after the operator ended episode 2 (ended, not committed).
    root = record(tmp_path / "crashed", lengths=(5, 6), leave_open=4, end_last=True)
    report = validate_dataset(root)
    assert report.passed, report.format_text()
    spool = report.check("files.spool")
    assert spool.warning
    spooled = [p.name for p in (root / fmt.SPOOL_DIR).iterdir()]
    assert len(spooled) == 1 and spooled[0] in spool.message
    assert "LeRobotDataset.open(root) recovers ended episodes" in spool.message
    assert "ended, not committed" in spool.details[0]
    assert run_cli("--target", root) == 0
    out = capsys.readouterr().out
    assert f"  ⚠ 1 uncommitted spooled episode(s) in .spool/: {spooled[0]}" in out
    assert "1 warning(s)" in out

    LeRobotDataset.open(root, use_async_saver=False, vcodec="libx264").close()
    report = validate_dataset(root)
    assert report.passed and not report.warnings, report.format_text()
    assert json.loads((root / fmt.INFO_PATH).read_text())["total_episodes"] == 3


def test_interrupted_episode_in_spool_is_named_partial(tmp_path):
    root = record(tmp_path / "ds", lengths=(5,), leave_open=3)
    report = validate_dataset(root)
    assert report.passed, report.format_text()
    spool = report.check("files.spool")
    assert spool.warning and "interrupted mid-episode" in spool.details[0]


def test_dataset_before_its_first_commit_is_valid(tmp_path):
    """Killed while recording the first episode: only info.json, the spool and the live encode exist."""
    root = record(tmp_path / "ds", lengths=(), leave_open=3)
    spool_id = next((root / fmt.SPOOL_DIR).iterdir()).name
    live_encode = root / fmt.STAGING_DIR / spool_id / f"{TOP}.mp4"
    live_encode.parent.mkdir(parents=True, exist_ok=True)
    live_encode.write_bytes(b"\0" * 64)  # what a SIGKILL leaves of the live encoder's file
    report = validate_dataset(root)
    assert report.passed, report.format_text()
    assert not (root / "data").exists() and report.check("files.spool").warning

    (root / fmt.STAGING_DIR / "finished-save").mkdir()
    (root / fmt.STAGING_DIR / "finished-save" / "data.parquet").write_bytes(b"x")
    assert {c.name for c in validate_dataset(root).failed} == {"files.staging"}


def test_spool_of_an_already_committed_episode_is_named_as_such(tmp_path):
    """Killed after info.json named episode 0, before its spool folder was removed."""
    root = tmp_path / "ds"
    ds = create(root)
    record_episode(ds, 0, 5)
    buffer = ds.end_episode()
    shutil.copytree(buffer.path, tmp_path / "spool-copy")
    ds.commit_saved_episode(buffer)
    ds.close()
    shutil.copytree(tmp_path / "spool-copy", buffer.path)
    report = validate_dataset(root)
    assert report.passed
    check = report.check("files.spool")
    assert check.message.startswith(f"1 committed episode(s) still in .spool/: {buffer.spool_id}")
    assert "already committed as episode 0" in check.details[0]
    (root / fmt.INFO_PATH).unlink()
    assert {c.name for c in validate_dataset(root).failed} == {"info.json"}  # no crash without info


# What the validator says right after a SIGKILL at each step of a sync save of episode 1 (tests/crash_child.py),
# before LeRobotDataset.open(root) repairs: the commit order (files, JSONL, info.json) leaves these traces.
VERDICT_AFTER_KILL = {
    "mid_recording": set(),
    "mid_encode": set(),
    "mid_parquet": set(),
    "after_parquet_staged": set(),
    "after_files_moved": {"parquet.files", "info.totals", f"videos.count:{TOP}", f"videos.count:{WRIST}"},
    "mid_metadata": {"info.totals"},
    "mid_info_write": {"info.totals", "files.tmp"},
    "after_info_write": set(),
}


@pytest.mark.slow
@pytest.mark.parametrize("point", sorted(VERDICT_AFTER_KILL))
def test_verdict_right_after_sigkill_and_after_reopen(tmp_path, point):
    root = tmp_path / "ds"
    child = subprocess.run([sys.executable, str(REPO / "tests" / "crash_child.py"), str(root), point, "sync"],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stdout + child.stderr
    report = validate_dataset(root)
    assert {c.name for c in report.failed} == VERDICT_AFTER_KILL[point], report.format_text()
    assert report.check("files.spool").warning
    for check in report.failed:
        assert "LeRobotDataset.open(root) rolls the dataset back" in " ".join(check.details)
    LeRobotDataset.open(root, use_async_saver=False, vcodec="libx264").close()
    report = validate_dataset(root)
    assert report.passed, report.format_text()


# --------------------------------------------------------------------------- reference comparisons


@pytest.fixture(scope="session")
def other_robot(tmp_path_factory) -> Path:
    """A valid dataset of another shape: 7 joints, one camera."""
    return record(tmp_path_factory.mktemp("other") / "ds", lengths=(6,), cameras=(TOP,),
                  joints=JOINTS + ["elbow_roll"])


def test_reference_mismatch_of_features_and_cameras(dataset, other_robot, capsys):
    assert validate_dataset(other_robot).passed
    report = validate_dataset(dataset, reference=other_robot)
    assert {c.name for c in report.failed} == {"reference.info", "reference.parquet_types", "reference.cameras"}
    assert "feature 'action' is ('float32', (6,)" in " ".join(report.check("reference.info").details)
    assert f"feature '{WRIST}' is not in the reference" in report.check("reference.info").details
    assert run_cli("--reference", other_robot, "--target", dataset) == 1
    assert "✗ Camera directories differ" in capsys.readouterr().out


def test_reference_schema_mismatch(dataset, pristine, tmp_path, capsys):
    reference = Path(shutil.copytree(pristine, tmp_path / "ref"))
    edit_parquet(reference, 0, lambda t: t.append_column("next.done", pa.array([False] * t.num_rows)))
    report = validate_dataset(dataset, reference=reference)
    assert {c.name for c in report.failed} == {"reference.parquet_schema"}
    assert report.check("reference.parquet_schema").message == "Parquet missing columns: {'next.done'}"
    assert run_cli("--reference", reference, "--target", dataset) == 1


# --------------------------------------------------------------------------- usage errors


def cli_exit_code(*args) -> int:
    """Exit status as the shell sees it: argparse errors leave through SystemExit."""
    try:
        return run_cli(*args)
    except SystemExit as e:
        return e.code


def test_usage_errors_exit_2_with_one_line(dataset, tmp_path, capsys):
    cases = {
        "required": [],
        "no value": ["--target"],
        "unknown flag": ["--target", dataset, "--bogus"],
        "target missing": ["--target", tmp_path / "nope"],
        "target is a file": ["--target", dataset / fmt.INFO_PATH],
        "reference missing": ["--target", dataset, "--reference", tmp_path / "nope"],
        "reference not a dataset": ["--target", dataset, "--reference", tmp_path],
    }
    errors = {}
    for case, args in cases.items():
        assert cli_exit_code(*args) == 2, case
        captured = capsys.readouterr()
        assert captured.out == "", case
        assert len(captured.err.strip().splitlines()) == 1, (case, captured.err)
        errors[case] = captured.err
    assert "the following arguments are required: --target" in errors["required"]
    assert "unrecognized arguments: --bogus" in errors["unknown flag"]
    assert f"target {tmp_path / 'nope'} is not a directory" in errors["target missing"]
    assert "is not a directory" in errors["target is a file"]
    assert f"reference {tmp_path / 'nope'} is not a directory" in errors["reference missing"]
    assert f"reference {tmp_path}: cannot read meta/info.json" in errors["reference not a dataset"]


def test_library_raises_on_bad_paths(tmp_path):
    with pytest.raises(DatasetPathError, match="not a directory"):
        validate_dataset(tmp_path / "missing")
    with pytest.raises(DatasetPathError, match="reference"):
        validate_dataset(tmp_path, reference=tmp_path)


def test_script_runs_from_repo_root(dataset, tmp_path):
    """The real entry point: exit codes 0, 1 and 2 from a separate process."""
    def run(*args):
        return subprocess.run([sys.executable, "scripts/validate_dataset_format.py", *map(str, args)],
                              cwd=REPO, capture_output=True, text=True, timeout=60)

    ok = run("--target", dataset)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "✓ VALIDATION PASSED" in ok.stdout
    FAULTS["video_missing"].apply(dataset)
    bad = run("--target", dataset)
    assert bad.returncode == 1 and "✗ VALIDATION FAILED" in bad.stdout
    usage = run("--target", tmp_path / "absent")
    assert usage.returncode == 2 and usage.stdout == "" and "is not a directory" in usage.stderr


# --------------------------------------------------------------------------- full size


@pytest.mark.slow
def test_full_size_av1_episode_is_decoded_and_validated(tmp_path):
    """600 frames of 640x480 in LeRobot's default codec: every frame is decoded and counted."""
    root = tmp_path / "ds"
    ds = LeRobotDataset.create("test/full", root=root, fps=30, features=fmt.build_features(JOINTS, {"top": (480, 640)}),
                               robot_type="so101", use_async_saver=False, codebase_version="v2.1")
    yy, xx = np.mgrid[0:480, 0:640]
    scene = np.stack([xx % 256, (yy // 2) % 256, (xx + yy) % 256], -1).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 8, (8, 480, 640, 3), dtype=np.uint8)
    for i in range(600):
        frame = np.roll(scene, 2 * i, axis=1) + noise[i % 8]  # camera-like: a moving scene plus sensor noise
        ds.add_frame({"observation.state": np.full(6, i, np.float32), "action": np.zeros(6, np.float32),
                      TOP: frame}, task="pick the cube")
    ds.save_episode()
    ds.close()

    video = root / fmt.video_relpath(TOP, 0)
    started = time.perf_counter()
    probe = probe_video(video)
    elapsed = time.perf_counter() - started
    print(f"\ndecoded {probe.frames} frames of {probe.width}x{probe.height} {probe.codec} in {elapsed:.2f} s")
    assert (probe.frames, probe.codec, probe.width, probe.height) == (600, "av1", 640, 480)
    report = validate_dataset(root)
    assert report.passed, report.format_text()
