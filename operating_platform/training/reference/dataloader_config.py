"""Data-loader configs of the checkpoint scripts: configs/dataloader/<name>.yaml -> a dataset and loader settings.

A config names its dataset: a LeRobot v2.1 dataset at `root` (recorded on first use
by the caller's `record_missing` when `build_if_missing` is given and `root` does
not exist; the scripts pass the simulated arm and cameras), or `kind: synthetic`
for deterministic generated samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from operating_platform.training.reader import LeRobotReader

from .mock import MockDataset

REPO_ROOT = Path(__file__).resolve().parents[3]
CONFIG_DIR = REPO_ROOT / "configs" / "dataloader"
_LOADER_KEYS = {"batch_size", "shuffle", "seed", "num_workers", "prefetch", "num_epochs", "drop_last"}


class ConfigError(ValueError):
    """A data-loader config is missing or malformed."""


@dataclass
class DataConfig:
    name: str
    path: Path
    dataset: dict[str, Any]
    loader: dict[str, Any] = field(default_factory=dict)

    def build_dataset(self, record_missing: Callable[..., object] | None = None):
        """The dataset; `record_missing(root, num_episodes=..., ...)` records a missing `root` when the config asks."""
        kind = self.dataset.get("kind", "lerobot")
        if kind == "synthetic":
            return MockDataset(
                num_samples=int(self.dataset.get("num_samples", 2048)),
                seed=int(self.dataset.get("seed", 0)),
                image_hw=tuple(self.dataset.get("image_hw", (64, 64))),
                state_dim=int(self.dataset.get("state_dim", 7)),
                action_horizon=int(self.dataset.get("action_horizon", 16)),
            )
        if kind != "lerobot":
            raise ConfigError(f"{self.path}: dataset.kind must be 'lerobot' or 'synthetic', got {kind!r}")
        if "root" not in self.dataset:
            raise ConfigError(f"{self.path}: dataset.root is required for kind 'lerobot'")
        root = Path(self.dataset["root"])
        root = root if root.is_absolute() else REPO_ROOT / root
        if not root.exists():
            build = self.dataset.get("build_if_missing")
            if build is None:
                raise ConfigError(f"{self.path}: dataset root {root} does not exist (and no build_if_missing)")
            if record_missing is None:
                raise ConfigError(f"{self.path}: dataset root {root} does not exist (build_if_missing needs a recorder)")
            record_missing(
                root,
                num_episodes=int(build.get("num_episodes", 4)),
                frames_per_episode=int(build.get("frames_per_episode", 40)),
                cameras=tuple(build.get("cameras", ("top", "wrist"))),
                image_hw=tuple(build.get("image_hw", (48, 64))),
                fps=int(build.get("fps", 30)),
                vcodec=str(build.get("vcodec", "libx264")),
            )
        return LeRobotReader(
            root,
            action_horizon=int(self.dataset.get("action_horizon", 16)),
            image_dtype=str(self.dataset.get("image_dtype", "uint8")),
        )


def load_config(name_or_path: str) -> DataConfig:
    """By name (configs/dataloader/<name>.yaml) or by path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        available = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"config {name_or_path!r} not found ({path}); available: {available}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw.get("dataset"), dict):
        raise ConfigError(f"{path}: a 'dataset' mapping is required")
    loader = raw.get("loader") or {}
    unknown = sorted(set(loader) - _LOADER_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown loader keys {unknown} (known: {sorted(_LOADER_KEYS)})")
    return DataConfig(name=path.stem, path=path, dataset=raw["dataset"], loader=loader)
