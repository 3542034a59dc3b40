"""The training loop and its checkpoints: a resumed run is the uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from e2e_helpers import Lines

from operating_platform.training.checkpoint import CheckpointError, CheckpointManager
from operating_platform.training.hard_examples import HardExampleTracker
from operating_platform.training.loader import create_data_loader
from operating_platform.training.reference.harness import (
    TrainConfig,
    default_entry_text,
    format_hard_examples,
    format_step_line,
    train,
)
from operating_platform.training.reference.mock import MockDataset, MockModel
from operating_platform.training.reference.optim import Adam

REPO = Path(__file__).resolve().parents[1]


def mock_run(checkpoint_dir, steps, save_interval=4, workers=0):
    ds = MockDataset(num_samples=50, image_hw=(8, 8), max_token_len=16)
    model = MockModel(ds.tokenizer.vocab_size, ds.state_dim, ds.max_token_len)
    loader = create_data_loader(ds, 8, seed=1, num_workers=workers, persistent_iterator=True)
    tracker = HardExampleTracker(max_hard_examples=5, log_interval=3)
    config = TrainConfig(num_train_steps=steps, log_interval=100, save_interval=save_interval, checkpoint_dir=str(checkpoint_dir))
    try:
        return train(model, model.init(0), Adam(1e-2), loader, config, tracker=tracker, log=lambda _: None)
    finally:
        loader.close()


def test_resumed_training_reproduces_the_uninterrupted_run(tmp_path):
    reference = mock_run(tmp_path / "a", 14)
    assert len(reference) == 14
    first = mock_run(tmp_path / "b", 6)  # checkpoints at 4 and 6; crosses an epoch boundary (50 samples)
    resumed = mock_run(tmp_path / "b", 14)
    assert [r["step"] for r in resumed] == list(range(6, 14))
    assert first + resumed == reference  # floats compared exactly
    # a crash right after step 4's checkpoint: the latest complete checkpoint wins
    manager = CheckpointManager(tmp_path / "c")
    mock_run(tmp_path / "c", 6)
    (tmp_path / "c" / "step_00000006").rename(tmp_path / "c" / ".step_00000006.partial")
    assert manager.latest_step() == 4
    assert mock_run(tmp_path / "c", 14) == reference[4:]


def test_training_with_loader_workers_matches_in_process(tmp_path):
    assert mock_run(tmp_path / "w", 5, workers=2) == mock_run(tmp_path / "i", 5)


def test_checkpoint_contents_and_errors(tmp_path):
    mock_run(tmp_path, 9, save_interval=3)
    manager = CheckpointManager(tmp_path)
    assert manager.steps() == [3, 6, 9]
    ckpt = manager.restore()
    assert ckpt.step == 9 and set(ckpt.params) == {"embed", "state_proj", "pos", "out", "out_bias"}
    assert int(ckpt.opt_state["count"]) == 9
    assert json.loads((tmp_path / "step_00000009" / "meta.json").read_text())["step"] == 9
    with pytest.raises(CheckpointError, match="No checkpoint found in"):
        CheckpointManager(tmp_path / "none").restore()
    (tmp_path / "step_00000009" / "opt_state.npz").unlink()
    with pytest.raises(CheckpointError, match="opt_state.npz: missing"):
        manager.restore(9)


def test_keeps_only_the_latest_checkpoints(tmp_path):
    mock_run(tmp_path, 20, save_interval=2)
    assert CheckpointManager(tmp_path).steps() == [16, 18, 20]


def test_adam_reduces_a_quadratic():
    opt = Adam(0.1, max_grad_norm=None)
    params = {"x": np.array([3.0, -2.0], np.float32)}
    state = opt.init(params)
    for _ in range(200):
        params, state = opt.update(params, {"x": 2 * params["x"]}, state)
    assert np.abs(params["x"]).max() < 0.05


def _script(*args, **kwargs):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300, **kwargs)


def _losses(path: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, path.read_text().splitlines())}


@pytest.mark.slow
def test_mock_training_killed_with_sigkill_resumes_to_the_same_losses(tmp_path):
    args = ["scripts/test_training_mock.py", "--num_train_steps", "30", "--save_interval", "5", "--log_interval", "1",
            "--hard_example_log_interval", "10", "--batch_size", "8"]
    ref = _script(*args, "--checkpoint_dir", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr
    victim = subprocess.Popen([sys.executable, "-u", *args, "--checkpoint_dir", str(tmp_path / "run"), "--resume"],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        Lines(victim.stdout).until("Step   17:", timeout_s=240)
        os.kill(victim.pid, signal.SIGKILL)
    finally:
        victim.kill()
        victim.wait()
    assert victim.returncode == -signal.SIGKILL
    resumed = _script(*args, "--checkpoint_dir", str(tmp_path / "run"), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "Resumed from checkpoint step 15" in resumed.stdout
    assert _losses(tmp_path / "run" / "metrics_process0.jsonl") == _losses(tmp_path / "ref" / "metrics_process0.jsonl")


@pytest.mark.slow
def test_mock_training_with_two_processes(tmp_path):
    out = _script("scripts/test_training_mock.py", "--num_train_steps", "20", "--num_processes", "2", "--batch_size", "8",
                  "--hard_example_log_interval", "10", "--checkpoint_dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "Hard examples:" in out.stdout and "total_samples=176" in out.stdout  # 11 steps x 2 processes x 8
    assert sorted(p.name for p in (tmp_path / "step_00000020" / "dataloader").iterdir()) == [
        "dataloader_state_process_00000.json", "dataloader_state_process_00001.json"]
    report = (tmp_path / "hard_examples" / "hard_examples_step_00000010.jsonl").read_text().splitlines()
    assert {json.loads(line)["process_index"] for line in report} == {0, 1}


def test_log_lines_show_every_metric_and_the_hardest_examples():
    record = {"step": 3, "loss": 1.5, "grad_norm": 0.25, "param_norm": 2.0, "token_acc": 0.5, "max_per_sample_loss": 7.0}
    assert format_step_line(3, record) == (
        "Step    3: loss=1.5000, grad_norm=0.2500, param_norm=2.0000, token_acc=0.5000, max_per_sample_loss=7.0000"
    )
    payload = {"entries": [{"loss": 9.0, "step": 2, "prompt": "open"}, {"loss": 8.0, "step": 1, "prompt": "close"}],
               "quantile_threshold": 3.0, "total_samples": 336}
    assert format_hard_examples(payload, 1, default_entry_text) == [
        "  Hard examples: 2 entries, threshold=3.0000, total_samples=336",
        "    #1: loss=9.0000, step=2, prompt=open...",
    ]
