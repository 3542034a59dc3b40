"""Datasets shared by the training tests, built once per pytest session (cached on disk)."""

from __future__ import annotations

from pathlib import Path

from operating_platform.simulation.teleop import record_sim_dataset


def recorded_dataset(tmp_path_factory, name: str = "training_sim_ds", **kwargs) -> Path:
    """A small dataset recorded by the real writer from the simulated arm and cameras."""
    root = tmp_path_factory.getbasetemp() / name
    if not (root / "meta" / "info.json").exists():
        kwargs = {"num_episodes": 3, "frames_per_episode": 24, "image_hw": (48, 64), "vcodec": "libx264", **kwargs}
        record_sim_dataset(root, **kwargs)
    return root


class JitteryDataset:
    """Wraps a source and sleeps a random 0-4 ms per sample, so worker completion order varies."""

    def __init__(self, inner):
        self.inner = inner

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, index):
        import os
        import time

        time.sleep(os.urandom(1)[0] / 255 * 0.004)
        return self.inner[index]

    def fingerprint(self):
        return self.inner.fingerprint()


class FailingDataset:
    """Raises (or kills its process) when asked for `bad_index`."""

    def __init__(self, inner, bad_index: int, exit_process: bool = False):
        self.inner, self.bad_index, self.exit_process = inner, bad_index, exit_process

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, index):
        if index == self.bad_index:
            if self.exit_process:
                import os

                os._exit(3)
            raise ValueError(f"sample {index} is corrupt")
        return self.inner[index]

    def fingerprint(self):
        return self.inner.fingerprint()


def gather_worker(process_index: int, process_count: int, port: int, losses_by_process, results) -> None:
    """One process of a hard-example gather: track its losses, join the gather, report what it got."""
    import numpy as np

    from operating_platform.training.gather import TcpCollective
    from operating_platform.training.hard_examples import HardExampleTracker, gather_hard_examples

    try:
        with TcpCollective(process_index, process_count, ("127.0.0.1", port), timeout=20.0) as collective:
            tracker = HardExampleTracker(max_hard_examples=4, resize_hw=(8, 8), log_interval=1, process_index=process_index)
            losses = losses_by_process[process_index]
            if len(losses):
                batch = {"observation.images.top": np.full((len(losses), 16, 16, 3), process_index * 50, np.uint8),
                         "task": [f"task of process {process_index}"] * len(losses)}
                tracker.update(losses)
                tracker.add_local_examples(1, batch, losses, global_idx_base=process_index * 100)
            merged = gather_hard_examples(collective, tracker.log_if_ready(1), max_entries=6)
            results.put((process_index, merged))
    except Exception as e:
        results.put((process_index, e))
