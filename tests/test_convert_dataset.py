"""scripts/convert_dataset.py both ways: parquet values and video packets survive unchanged
(v2.1 -> v3.0 -> v2.1 gives back the same tables and bit-identical decoded frames), the
results validate, and each loads in the LeRobot that reads its format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import lerobot_env
from dataset_factory import make_frame, write_dataset
from e2e_helpers import REPO, assert_valid

from operating_platform.dataset.video import decode_video_frames

CONVERT = REPO / "scripts" / "convert_dataset.py"
LENGTHS = (20, 25, 15)
CAMS = ("observation.images.top", "observation.images.wrist")


def convert(to: str, src: Path, dst: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CONVERT), "--to", to, str(src), str(dst), *extra],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("convert")
    roots = {"v2.1": write_dataset(tmp / "v21", lengths=LENGTHS)}
    roots["v3.0"] = tmp / "v30"
    result = convert("v3.0", roots["v2.1"], roots["v3.0"], "--video-files-size-in-mb", "0.004")  # two video files
    assert result.returncode == 0, result.stdout + result.stderr
    roots["back"] = tmp / "back"
    result = convert("v2.1", roots["v3.0"], roots["back"])
    assert result.returncode == 0, result.stdout + result.stderr
    return roots


def test_both_results_validate(converted):
    assert assert_valid(converted["v3.0"])["codebase_version"] == "v3.0"
    assert assert_valid(converted["back"])["codebase_version"] == "v2.1"
    files = {p.relative_to(converted["v3.0"]).as_posix() for p in converted["v3.0"].rglob("*.mp4")}
    assert "videos/observation.images.top/chunk-000/file-001.mp4" in files  # the size limit split them
    assert not (converted["v3.0"] / ".episodes").exists()


def test_round_trip_gives_back_the_same_parquet_and_metadata(converted):
    a, b = converted["v2.1"], converted["back"]
    for ep in range(len(LENGTHS)):
        rel = f"data/chunk-000/episode_{ep:06d}.parquet"
        ta, tb = pq.read_table(a / rel), pq.read_table(b / rel)
        # The recorder's own provenance key (which spool the rows came from) does not survive a conversion.
        ta = ta.replace_schema_metadata({k: v for k, v in ta.schema.metadata.items() if not k.startswith(b"operating_platform.")})
        assert tb.schema.equals(ta.schema, check_metadata=True) and tb.equals(ta), rel
    for rel in ("meta/episodes.jsonl", "meta/tasks.jsonl"):
        assert (b / rel).read_text() == (a / rel).read_text(), rel
    stats_a, stats_b = ([json.loads(x) for x in (r / "meta/episodes_stats.jsonl").read_text().splitlines()] for r in (a, b))
    assert stats_a == stats_b
    info_a, info_b = (json.loads((r / "meta/info.json").read_text()) for r in (a, b))
    assert info_a == info_b


def test_video_packets_are_not_reencoded(converted):
    a, b = converted["v2.1"], converted["back"]
    for ep in range(len(LENGTHS)):
        for cam in CAMS:
            rel = f"videos/chunk-000/{cam}/episode_{ep:06d}.mp4"
            fa, fb = decode_video_frames(a / rel), decode_video_frames(b / rel)
            assert len(fa) == len(fb) == LENGTHS[ep]
            assert all(np.array_equal(x, y) for x, y in zip(fa, fb)), f"{rel}: decoded frames differ (re-encoded?)"


def test_refuses_same_format_and_existing_destination(converted, tmp_path):
    same = convert("v3.0", converted["v3.0"], tmp_path / "x")
    assert same.returncode == 2 and "already a LeRobot v3.0 dataset" in same.stderr
    taken = convert("v2.1", converted["v3.0"], converted["v2.1"])
    assert taken.returncode == 2 and "not empty" in taken.stderr


@pytest.mark.slow
def test_converted_datasets_load_in_lerobot(converted, tmp_path):
    pytest.importorskip("lerobot")
    if not lerobot_env.V30_PATH.is_dir():
        pytest.skip(f"no lerobot 0.4.x at {lerobot_env.V30_PATH}")
    total = sum(LENGTHS)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"items": list(range(total))}))
    out = tmp_path / "read.npz"
    child = Path(__file__).with_name("lerobot_v30_read.py")
    result = subprocess.run([sys.executable, str(child), str(converted["v3.0"]), str(out), str(spec)],
                            env=lerobot_env.converter_env(tmp_path / "hf"), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    got = dict(np.load(out))
    starts = np.cumsum((0,) + LENGTHS[:-1])
    for index in range(total):
        ep = int(np.searchsorted(starts, index, side="right")) - 1
        i = int(index - starts[ep])
        want = make_frame(ep, i)
        np.testing.assert_array_equal(got["col/observation.state"][index], want["observation.state"])
        for cam in CAMS:
            img = np.transpose(got[f"item/{cam}"][index], (1, 2, 0)) * 255.0
            assert np.abs(img - want[cam]).mean() < 12.0, (index, cam)
    with pytest.MonkeyPatch.context() as mp:  # the v2.1 result in LeRobot 0.3.x, in this process
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_HOME", str(tmp_path / "hf21"))
        ds = lerobot_env.import_lerobot_dataset()("test/back", root=converted["back"], video_backend="pyav")
        assert len(ds) == total
        for index in (0, 19, 20, total - 1):
            ep = int(np.searchsorted(starts, index, side="right")) - 1
            np.testing.assert_array_equal(ds[index]["observation.state"].numpy(), make_frame(ep, int(index - starts[ep]))["observation.state"])
