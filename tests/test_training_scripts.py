"""The training scripts run as documented, and fail loudly."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from operating_platform.training.checkpoint import CheckpointManager

REPO = Path(__file__).resolve().parents[1]
LANG_ACTION = re.compile(r"^move \w+ \d+cm and move \w+ \d+cm$")


def run(*args):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_mock_training_script(tmp_path):
    out = run("scripts/test_training_mock.py", "--num_train_steps", "21", "--log_interval", "10",
              "--hard_example_log_interval", "20", "--max_hard_examples_buffer", "8", "--checkpoint_dir", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    records = jsonl(tmp_path / "metrics_process0.jsonl")
    assert [r["step"] for r in records] == list(range(21))
    assert all(np.isfinite(r["loss"]) and 0 <= r["token_acc"] <= 1 for r in records)
    entries = jsonl(tmp_path / "hard_examples" / "hard_examples_step_00000020.jsonl")
    assert len(entries) == 8 and [e["rank"] for e in entries] == list(range(1, 9))
    assert [e["loss"] for e in entries] == sorted((e["loss"] for e in entries), reverse=True)
    assert all(LANG_ACTION.match(e["lang_action"]) for e in entries), entries
    assert (tmp_path / "hard_examples" / "hard_examples_step_00000020.png").exists()
    assert CheckpointManager(tmp_path).latest_step() == 21
    again = run("scripts/test_training_mock.py", "--num_train_steps", "5", "--no_hard_examples", "--checkpoint_dir", str(tmp_path))
    assert again.returncode == 0, again.stdout + again.stderr
    assert [r["step"] for r in jsonl(tmp_path / "metrics_process0.jsonl")] == list(range(5))  # a fresh run, not a resume
    assert not (tmp_path / "hard_examples").exists() and CheckpointManager(tmp_path).steps() == [5]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from training_fixtures import recorded_dataset

    return recorded_dataset(tmp_path_factory, "scripts_sim_ds", image_hw=(120, 160))


def test_mock_training_on_a_recorded_dataset_reports_where_everything_went(recorded, tmp_path):
    import cv2

    out = run("scripts/test_training_mock.py", "--dataset", str(recorded), "--num_train_steps", "21", "--batch_size", "8",
              "--hard_example_log_interval", "20", "--max_hard_examples_buffer", "4", "--checkpoint_dir", str(tmp_path / "run"))
    assert out.returncode == 0, out.stdout + out.stderr
    entries = jsonl(tmp_path / "run" / "hard_examples" / "hard_examples_step_00000020.jsonl")
    assert len(entries) == 4 and all(e["task"] and e["episode"].isdigit() and e["frame"].isdigit() for e in entries)
    assert "valid_fraction" in jsonl(tmp_path / "run" / "metrics_process0.jsonl")[0]  # the BC policy's metric
    sheet = tmp_path / "run" / "hard_examples" / "hard_examples_step_00000020.png"
    for path in (sheet, tmp_path / "run" / "loss.png", tmp_path / "run" / "metrics_process0.jsonl"):
        assert str(path) in out.stdout, f"{path} is not named in the output"
    image = cv2.imread(str(sheet))
    assert image.shape[1] >= 4 * 160, "four readable frames side by side"
    cell = image[:120, :160]
    assert cell.std() > 10, "real camera frames, not solid tiles"
    assert cv2.imread(str(tmp_path / "run" / "loss.png")).shape == (360, 640, 3)


def test_outputs_default_to_a_folder_under_the_working_directory(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "test_training_mock.py"), "--num_train_steps", "3",
                          "--no_hard_examples"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "outputs" / "mock_training" / "loss.png").exists()
    assert CheckpointManager(tmp_path / "outputs" / "mock_training").latest_step() == 3


def hard_example_results(out_dir: Path) -> dict:
    results = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    assert results["checks"] and all(results["checks"].values()), results["checks"]
    return results


def test_hard_examples_integration_script_on_a_recorded_dataset(recorded, tmp_path):
    out = run("scripts/test_hard_examples_integration.py", "--dataset", str(recorded), "--steps", "6", "--batch_size", "4",
              "--buffer_size", "6", "--output_dir", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    results = hard_example_results(tmp_path)
    assert results["report"]["png"] == str(tmp_path / "hard_examples_step_00000006.png") and results["total_samples"] == 24
    assert all(e["task"] and "episode" in e for e in jsonl(Path(results["report"]["jsonl"])))


def test_hard_examples_integration_script(tmp_path):
    out = run("scripts/test_hard_examples_integration.py", "--steps", "30", "--batch_size", "8", "--buffer_size", "20",
              "--output_dir", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    results = hard_example_results(tmp_path)
    assert {"Buffer size constraint satisfied", "Buffer correctly sorted by loss", "Keys match buffer entries",
            "Buffer holds exactly the top-K losses seen", "All buffer entries have valid images"} <= set(results["checks"])
    assert results["total_samples"] == 240 and results["buffer_size"] == 20
    assert len(jsonl(Path(results["report"]["jsonl"]))) == 20
    tiny = run("scripts/test_hard_examples_integration.py", "--steps", "2", "--batch_size", "3", "--buffer_size", "50",
               "--output_dir", str(tmp_path / "tiny"))
    assert tiny.returncode == 0 and hard_example_results(tmp_path / "tiny")["buffer_size"] == 6
    bad = run("scripts/test_hard_examples_integration.py", "--steps", "0")
    assert bad.returncode == 2 and "--steps must be positive" in bad.stderr


def checkpoint_script(script: str, config: str, tmp_path: Path):
    """(completed process, its --results verdict)."""
    results = tmp_path / "results.json"
    out = run(f"scripts/tests/{script}", f"--config-name={config}", f"--results={results}")
    return out, json.loads(results.read_text(encoding="utf-8"))


def test_checkpoint_script_on_synthetic_config(tmp_path):
    out, results = checkpoint_script("test_dataloader_checkpoint_simple.py", "synthetic", tmp_path)
    assert out.returncode == 0 and results["passed"] and results["failure"] is None, out.stdout + out.stderr
    assert results["facts"] == {"batch_shapes": {"observation.state": [32, 1, 7], "action": [32, 16, 7]},
                                "batches_seen_restored": 5}
    assert "Restored dataloader continues exactly where the original stopped" in results["checks"]


def test_checkpoint_script_unknown_config_fails(tmp_path):
    out, results = checkpoint_script("test_dataloader_checkpoint_simple.py", "no_such_config", tmp_path)
    assert out.returncode == 1 and not results["passed"] and "config 'no_such_config' not found" in results["failure"]


@pytest.fixture
def recorded_config(tmp_path):
    path = tmp_path / "recorded.yaml"
    path.write_text(yaml.safe_dump({
        "dataset": {"kind": "lerobot", "root": str(tmp_path / "ds"), "action_horizon": 5,
                    "build_if_missing": {"num_episodes": 2, "frames_per_episode": 20, "image_hw": [48, 64]}},
        "loader": {"batch_size": 4, "seed": 3},
    }))
    return path


def test_checkpoint_script_builds_a_missing_dataset(recorded_config, tmp_path):
    out, results = checkpoint_script("test_dataloader_checkpoint_simple.py", str(recorded_config), tmp_path)
    assert out.returncode == 0 and results["passed"], out.stdout + out.stderr
    info = json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())
    assert (info["total_episodes"], info["total_frames"]) == (2, 40)
    assert results["facts"]["batch_shapes"] == {"observation.state": [4, 1, 6], "action": [4, 5, 6]}


@pytest.mark.slow
@pytest.mark.parametrize("config", ["synthetic", "recorded"])
def test_comprehensive_checkpoint_script(config, recorded_config, tmp_path):
    name = str(recorded_config) if config == "recorded" else config
    out, results = checkpoint_script("test_dataloader_checkpoint.py", name, tmp_path)
    assert out.returncode == 0 and results["passed"] and results["failure"] is None, out.stdout + out.stderr
    assert results["facts"]["sections_done"] == [
        "Basic save / restore", "Multiple save/load cycles across epochs", "Restore after the iterator exists",
        "Batch identifier tracking", "Worker processes and prefetch", "Multi-host scenario", "Refusing foreign states",
        "State size and restore cost",
    ]
    assert 0 < results["facts"]["state_bytes"] < 1024
    checks = " | ".join(results["checks"])
    for expected in ("save/load cycles over", "2 workers with prefetch give the in-process batches",
                     "State refused for another seed", "State refused for another dataset", "2 processes: disjoint shards"):
        assert expected in checks
