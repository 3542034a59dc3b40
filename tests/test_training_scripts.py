"""The training scripts run as documented, and fail loudly."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
STEP_LINE = re.compile(
    r"^Step +\d+: loss=\d+\.\d{4}, grad_norm=\d+\.\d{4}, param_norm=\d+\.\d{4}, token_acc=\d\.\d{4}, max_per_sample_loss=\d+\.\d{4}$", re.M
)


def run(*args):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_mock_training_script(tmp_path):
    out = run("scripts/test_training_mock.py", "--num_train_steps", "21", "--log_interval", "10",
              "--hard_example_log_interval", "20", "--max_hard_examples_buffer", "8", "--checkpoint_dir", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(STEP_LINE.findall(out.stdout)) == 3
    assert re.search(r"^  Hard examples: 8 entries, threshold=\d+\.\d{4}, total_samples=336$", out.stdout, re.M)
    assert re.search(r"^    #1: loss=\d+\.\d{4}, step=\d+, lang_action=move \w+ \d+cm and move \w+ \d+cm \(len=\d+\)\.\.\.$", out.stdout, re.M)
    assert "Training complete!" in out.stdout
    assert (tmp_path / "hard_examples" / "hard_examples_step_00000020.png").exists()
    again = run("scripts/test_training_mock.py", "--num_train_steps", "5", "--no_hard_examples", "--checkpoint_dir", str(tmp_path))
    assert again.returncode == 0 and "Starting fresh" in again.stdout and "Hard examples" not in again.stdout


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from training_fixtures import recorded_dataset

    return recorded_dataset(tmp_path_factory, "scripts_sim_ds", image_hw=(120, 160))


def test_mock_training_on_a_recorded_dataset_reports_where_everything_went(recorded, tmp_path):
    import cv2

    out = run("scripts/test_training_mock.py", "--dataset", str(recorded), "--num_train_steps", "21", "--batch_size", "8",
              "--hard_example_log_interval", "20", "--max_hard_examples_buffer", "4", "--checkpoint_dir", str(tmp_path / "run"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"Data: {recorded}" in out.stdout and "Initializing BCPolicy" in out.stdout
    assert re.search(r"^    #1: loss=\d+\.\d{4}, step=\d+, episode=\d frame=\d+ task=\w", out.stdout, re.M), out.stdout
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
    assert f"Checkpoint dir: {tmp_path}/outputs/mock_training" in out.stdout and (tmp_path / "outputs" / "mock_training" / "loss.png").exists()


def test_hard_examples_integration_script_on_a_recorded_dataset(recorded, tmp_path):
    out = run("scripts/test_hard_examples_integration.py", "--dataset", str(recorded), "--steps", "6", "--batch_size", "4",
              "--buffer_size", "6", "--output_dir", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"Contact sheet: {tmp_path}/hard_examples_step_00000006.png" in out.stdout and "✅ TEST PASSED" in out.stdout


def test_hard_examples_integration_script(tmp_path):
    out = run("scripts/test_hard_examples_integration.py", "--steps", "30", "--batch_size", "8", "--buffer_size", "20",
              "--output_dir", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    for check in ("Buffer size constraint satisfied", "Buffer correctly sorted by loss", "Keys match buffer entries",
                  "All buffer entries have valid images"):
        assert f"✓ {check}" in out.stdout
    assert "Total samples seen: 240" in out.stdout and "✅ TEST PASSED" in out.stdout
    tiny = run("scripts/test_hard_examples_integration.py", "--steps", "2", "--batch_size", "3", "--buffer_size", "50",
               "--output_dir", str(tmp_path / "tiny"))
    assert tiny.returncode == 0 and "Final buffer size: 6" in tiny.stdout
    bad = run("scripts/test_hard_examples_integration.py", "--steps", "0")
    assert bad.returncode == 2 and "--steps must be positive" in bad.stderr


def test_checkpoint_script_on_synthetic_config():
    out = run("scripts/tests/test_dataloader_checkpoint_simple.py", "--config-name=synthetic")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Batch 1: obs.state shape=(32, 1, 7), actions shape=(32, 16, 7)" in out.stdout
    assert "ALL TESTS PASSED! ✓" in out.stdout


def test_checkpoint_script_unknown_config_fails():
    out = run("scripts/tests/test_dataloader_checkpoint_simple.py", "--config-name=no_such_config")
    assert out.returncode == 1 and "config 'no_such_config' not found" in out.stdout and "ALL TESTS PASSED" not in out.stdout


@pytest.fixture
def recorded_config(tmp_path):
    path = tmp_path / "recorded.yaml"
    path.write_text(yaml.safe_dump({
        "dataset": {"kind": "lerobot", "root": str(tmp_path / "ds"), "action_horizon": 5,
                    "build_if_missing": {"num_episodes": 2, "frames_per_episode": 20, "image_hw": [48, 64]}},
        "loader": {"batch_size": 4, "seed": 3},
    }))
    return path


def test_checkpoint_script_builds_a_missing_dataset(recorded_config):
    out = run("scripts/tests/test_dataloader_checkpoint_simple.py", f"--config-name={recorded_config}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "recording it from the simulated arm and cameras" in out.stdout
    assert "obs.state shape=(4, 1, 6), actions shape=(4, 5, 6)" in out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("config", ["synthetic", "recorded"])
def test_comprehensive_checkpoint_script(config, recorded_config):
    name = str(recorded_config) if config == "recorded" else config
    out = run("scripts/tests/test_dataloader_checkpoint.py", f"--config-name={name}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("✓") >= 15 and "ALL TESTS PASSED! ✓" in out.stdout
