"""Shared set-up of the data-loader checkpoint scripts: config, loader factory, output."""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import traceback
from pathlib import Path
from typing import Callable, Iterator

from operating_platform.dataset.format import ACTION_KEY, STATE_KEY
from operating_platform.simulation.teleop import record_sim_dataset
from operating_platform.training.loader import create_data_loader
from operating_platform.training.reference.dataloader_config import load_config

RULE = "=" * 80


class CheckFailed(AssertionError):
    pass


PASSED: list[str] = []  # the checks passed so far, in order (written to --results)
FACTS: dict[str, object] = {}  # figures worth asserting on (written to --results)


def passed(text: str) -> None:
    print(f"✓ {text}")
    PASSED.append(text)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config-name", default="sim_small", help="configs/dataloader/<name>.yaml, or a path to a YAML file")
    p.add_argument("--checkpoint-dir", default=None, help="default: a fresh temporary directory")
    p.add_argument("--results", default=None, help="also write the verdict and the checks passed to this JSON file")
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
        passed(f"Config loaded: {self.config.name} ({len(self.dataset)} samples)")

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
        passed(f"Checkpoint directory: {root}")
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
    failure = None
    try:
        run(args)
    except Exception as e:
        if not isinstance(e, CheckFailed):
            traceback.print_exc()
        failure = f"{type(e).__name__}: {e}"
    print("\n" + RULE)
    print(f"TEST FAILED ✗: {failure}" if failure else "ALL TESTS PASSED! ✓")
    print(RULE)
    if args.results:
        results = {"passed": failure is None, "failure": failure, "checks": PASSED, "facts": FACTS}
        Path(args.results).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 1 if failure else 0
