"""Check the dataset location before dora starts, so a bad root costs a second, not a dataflow.

`check_dataset_location(cfg)` is the one place: the folder must exist or be creatable, be
writable, have free space, and (with --record.resume) hold a dataset recorded with the same
fps, robot type, joints and cameras. Every problem is one `LocationError` line; the probe
leaves nothing behind (folders it had to create are removed again).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from operating_platform.dataset import format as fmt
from operating_platform.dataset import space
from operating_platform.dataset.format import DatasetFormatError, build_features
from operating_platform.dataset.info import DatasetInfo
from operating_platform.dataset.writer import _check_resume_matches
from operating_platform.hardware.base import SO101_JOINT_NAMES

from .config import ConsoleConfig, camera_specs

ROBOT_TYPE = "so101"  # what the rendered dataflow stores as info.json robot_type (sim arms are SO-101 shaped)


class LocationError(ValueError):
    """One line naming the dataset root and what is wrong with it."""


def check_dataset_location(cfg: ConsoleConfig) -> Path:
    """The resolved dataset root, or LocationError; runs in well under a second."""
    record = cfg.record
    root = record.dataset_root.resolve()
    flag = f"--record.root={root}"
    has_dataset = (root / fmt.INFO_PATH).exists()
    if has_dataset and not record.resume:
        raise LocationError(f"{flag}: already holds a dataset; add --record.resume to append to it, "
                            "or choose another --record.root / --record.repo_id")
    if root.exists() and not root.is_dir():
        raise LocationError(f"{flag}: exists and is not a folder")
    if root.is_dir() and not has_dataset and any(root.iterdir()):
        raise LocationError(f"{flag}: exists, is not empty and is not a dataset; choose another root")
    _probe_writable(root, flag)
    if problem := free_space_problem(root, cfg):
        raise LocationError(f"{flag}: {problem}")
    if has_dataset:
        _check_resume_compatible(root, cfg, flag)
    return root


def free_default_name(cfg: ConsoleConfig, argv: list[str]) -> str | None:
    """When the operator named no dataset and the default one exists (e.g. after the quick start's
    `dora run`), record into the next free `<repo_id>_N` instead of refusing; a dataset the
    operator named is never switched. Returns the line that says so, or None."""
    record = cfg.record
    named = any(a.split("=")[0] in ("--record.repo_id", "--record.root") for a in argv)
    if named or record.resume or not (record.dataset_root / fmt.INFO_PATH).exists():
        return None
    taken = record.dataset_root
    base, n = record.repo_id, 2
    while (taken.parent / f"{base}_{n}").exists():
        n += 1
    record.repo_id = f"{base}_{n}"
    return (f"{taken} already holds a dataset: recording into {record.dataset_root} "
            "(name one with --record.repo_id=NAME, or add --record.resume to append)")


def free_space_problem(root: Path, cfg: ConsoleConfig) -> str | None:
    """Why recording into `root` would run out of disk, or None: room for a few episodes at the
    configured cameras, fps and episode length (dataset/space.py says how it estimates)."""
    try:
        space.check_free_space(root, _cameras(cfg), cfg.record.fps, cfg.record.episode_time_s, cfg.record.vcodec)
    except space.InsufficientSpaceError as exc:
        return str(exc)
    return None


def _cameras(cfg: ConsoleConfig) -> dict[str, tuple[int, int]]:
    return {c.name: (cfg.robot.camera_height, cfg.robot.camera_width) for c in camera_specs(cfg.robot)}


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe_writable(root: Path, flag: str) -> None:
    """Create the folder (and a file in it) for real, then undo what was created."""
    ancestor = _existing_ancestor(root)
    if not ancestor.is_dir():
        raise LocationError(f"{flag}: cannot be created, {ancestor} is not a folder")
    created = [p for p in [root, *root.parents] if not p.exists()]
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-probe-"):
            pass
    except OSError as exc:
        raise LocationError(f"{flag}: not writable ({exc.strerror or exc}: {exc.filename or root})") from None
    finally:
        for folder in created:  # deepest first
            try:
                os.rmdir(folder)
            except OSError:
                pass


def _check_resume_compatible(root: Path, cfg: ConsoleConfig, flag: str) -> None:
    cameras = _cameras(cfg)
    try:
        info = DatasetInfo.load(root)
        if info.codebase_version != cfg.record.dataset_version:
            raise DatasetFormatError(f"cannot resume {root}: it is a LeRobot {info.codebase_version} dataset, "
                                     f"--record.dataset_version={cfg.record.dataset_version} was requested")
        _check_resume_matches(root, info, cfg.record.fps, build_features(list(SO101_JOINT_NAMES), cameras), ROBOT_TYPE)
    except DatasetFormatError as exc:
        raise LocationError(f"{flag}: {exc}") from None
    except (OSError, ValueError, KeyError) as exc:
        raise LocationError(f"{flag}: meta/info.json cannot be read ({exc})") from None
