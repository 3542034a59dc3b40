"""Behaviour cloning on datasets recorded from the simulated arm and cameras (by the writer, and by the dora dataflow)."""

import numpy as np
import pytest
from e2e_helpers import copy_dataflow
from training_fixtures import recorded_dataset

from operating_platform.training.loader import create_data_loader
from operating_platform.training.reader import LeRobotReader
from operating_platform.training.reference.bc import BCPolicy
from operating_platform.training.reference.harness import TrainConfig, train
from operating_platform.training.reference.optim import Adam
from operating_platform.training.sources import collate


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    r = LeRobotReader(recorded_dataset(tmp_path_factory), action_horizon=4)
    yield r
    r.close()


def test_gradients_match_finite_differences(reader):
    policy = BCPolicy.for_dataset(reader, hidden=8)
    batch = collate([reader[i] for i in (0, 23, 40, 71)])  # includes padded chunks at episode ends
    params = {k: v.astype(np.float64) for k, v in policy.init(0).items()}
    _, _, grads, _ = policy.compute_loss(params, batch)
    for key in params:
        idx = tuple(np.unravel_index(np.argmax(np.abs(grads[key])), params[key].shape))
        bumped = {k: v.copy() for k, v in params.items()}
        bumped[key][idx] += 1e-4
        up = policy.compute_loss(bumped, batch)[0]
        bumped[key][idx] -= 2e-4
        down = policy.compute_loss(bumped, batch)[0]
        assert grads[key][idx] == pytest.approx((up - down) / 2e-4, rel=1e-3, abs=1e-6), key


def test_bc_loss_decreases_when_trained_through_the_loader(reader):
    policy = BCPolicy.for_dataset(reader)
    loader = create_data_loader(reader, 8, seed=0, persistent_iterator=True)
    history = train(policy, policy.init(0), Adam(3e-3), loader, TrainConfig(num_train_steps=60, log_interval=1000), log=lambda _: None)
    losses = np.array([r["loss"] for r in history])
    assert losses[-10:].mean() < 0.5 * losses[:10].mean()
    predicted = policy.predict(policy.init(0), collate([reader[0]]))
    assert predicted.shape == (1, 4, 6)


@pytest.mark.slow
def test_bc_trains_on_a_dataset_recorded_by_the_dora_dataflow(workdir):
    """The real path: `dora run dataflow.yml` (simulated devices) records, the loader reads, BC learns."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from operating_platform.core.launcher import dora_binary

    copy_dataflow(workdir)
    root = workdir / "recorded"
    settings = {"NUM_EPISODES": "2", "EPISODE_TIME_S": "2", "RESET_TIME_S": "0.2", "CAMERA_WIDTH": "64",
                "CAMERA_HEIGHT": "48", "VCODEC": "libx264", "DATASET_ROOT": str(root)}
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [dora_binary(), "run", "dataflow.yml", *[a for k, v in settings.items() for a in ("--env", f"{k}={v}")]]
    result = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=150, start_new_session=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    reader = LeRobotReader(root, action_horizon=4)
    assert len(reader.episodes) == 2 and reader.camera_keys == ["observation.images.top", "observation.images.wrist"]
    policy = BCPolicy.for_dataset(reader)
    loader = create_data_loader(reader, 8, seed=0, persistent_iterator=True)
    history = train(policy, policy.init(0), Adam(3e-3), loader, TrainConfig(num_train_steps=60, log_interval=1000), log=lambda _: None)
    losses = np.array([r["loss"] for r in history])
    assert losses[-10:].mean() < 0.5 * losses[:10].mean()
