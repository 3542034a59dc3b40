"""Shared set-up of the data-loader checkpoint scripts: config, loader factory, output."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import traceback
from pathlib import Path
from typing import Callable, Iterator

from operating_platform.dataset.format import ACTION_KEY, STATE_KEY
from operating_platform.hardware.sim_teleop import record_sim_dataset
from operating_platform.training.loader import create_data_loader
from operating_platform.training.reference.dataloader_config import load_config

RULE = "=" * 80


class CheckFailed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config-name", default="sim_small", help="configs/dataloader/<name>.yaml, or a path to a YAML file")
    p.add_argument("--checkpoint-dir", default=None, help="default: a fresh temporary directory")
    return p.parse_args()


def record_from_simulation(root: Path, **settings) -> None:
    print(f"  Dataset {root} not found: recording it from the simulated arm and cameras...")
    record_sim_dataset(root, **settings)


class LoaderFactory:
    """Loaders over one dataset with the config's settings (overridable per call)."""

    def __init__(self, config_name: str):
        print("Loading configuration...")
        self.config = load_config(config_name)
        self.dataset = self.config.build_dataset(record_missing=record_from_simulation)
        print(f"✓ Config loaded: {self.config.name} ({len(self.dataset)} samples)")

    def __call__(self, **overrides):
        settings = {"batch_size": 8, "shuffle": True, "seed": 0, "persistent_iterator": True, **self.config.loader, **overrides}
        return create_data_loader(self.dataset, **settings)


@contextlib.contextmanager
def checkpoint_root(arg: str | None) -> Iterator[Path]:
    """The given directory, or a temporary one removed afterwards."""
    with contextlib.ExitStack() as stack:
        base = Path(arg) if arg else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dataloader_ckpt_")))
        root = base / "test_checkpoint"
        root.mkdir(parents=True, exist_ok=True)
        print(f"✓ Checkpoint directory: {root}")
        yield root


def shapes_line(batch) -> str:
    return f"obs.state shape={batch[STATE_KEY].shape}, actions shape={batch[ACTION_KEY].shape}"


def state_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*.json"))


def run_suite(title: str, description: str, run: Callable[[argparse.Namespace], None]) -> int:
    """Banner, run, verdict: exit status 0 only when every check passed."""
    args = parse_args(description)
    print(RULE)
    print(title)
    print(RULE + "\n")
    try:
        run(args)
    except Exception as e:
        if not isinstance(e, CheckFailed):
            traceback.print_exc()
        print("\n" + RULE)
        print(f"TEST FAILED ✗: {type(e).__name__}: {e}")
        print(RULE)
        return 1
    print("\n" + RULE)
    print("ALL TESTS PASSED! ✓")
    print(RULE)
    return 0
