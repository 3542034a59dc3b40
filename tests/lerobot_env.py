"""Where LeRobot lives for the compatibility tests, and how to import it on a CPU-only machine.

scripts/install_lerobot_for_tests.sh installs lerobot 0.3.x (the v2.1 reader) into the
venv and lerobot 0.4.x (the v2.1 -> v3.0 converter) into its own directory, because the
two need different `datasets` majors. `python tests/lerobot_env.py` checks both import.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

V30_PATH = Path(os.environ.get("LEROBOT_V30_PATH", Path(sys.prefix) / "lerobot-v30"))
READER_VERSION_PREFIX = "0.3."
CONVERTER_VERSION_PREFIX = "0.4."


def import_torchvision():
    """Import torchvision whose compiled ops cannot load.

    PyPI's Linux torchvision wheels are CUDA builds: their `_C` extension links
    libtorch_cuda, absent from the CPU torch here, so torchvision runs without its
    compiled ops. LeRobot's dataset code only uses its Python parts (transforms,
    the PyAV VideoReader), but torchvision/_meta_registrations.py registers a fake
    kernel for `torchvision::nms` unconditionally, which fails when the op was never
    declared. Declaring its schema lets the import finish; calling nms would still
    fail loudly (no kernel).
    """
    import torch

    warnings.filterwarnings("ignore", message="Failed to load image Python extension")  # the same cause
    try:
        import torchvision
    except RuntimeError as e:
        if "torchvision::nms" not in str(e):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        torch.library.define("torchvision::nms", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision
    return torchvision


def import_lerobot_dataset(expected_version_prefix: str = READER_VERSION_PREFIX):
    """LeRobot's own `LeRobotDataset` class (module path of lerobot >= 0.3)."""
    import_torchvision()
    import lerobot
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    if not lerobot.__version__.startswith(expected_version_prefix):
        raise RuntimeError(f"lerobot {lerobot.__version__} from {lerobot.__file__}; expected {expected_version_prefix}x")
    return LeRobotDataset


def converter_env(hf_home: Path) -> dict:
    """Environment for a child process that imports lerobot 0.4.x from V30_PATH, offline."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(hf_home))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(V30_PATH), env.get("PYTHONPATH", "")) if p)
    return env


def _check_installed() -> None:
    import lerobot

    import_lerobot_dataset()
    print(f"reader: lerobot {lerobot.__version__} ({Path(lerobot.__file__).parent})")
    if not V30_PATH.is_dir():
        raise SystemExit(f"converter: {V30_PATH} missing; run scripts/install_lerobot_for_tests.sh")
    probe = (
        "import sys, lerobot_env;"
        "lerobot_env.import_lerobot_dataset(lerobot_env.CONVERTER_VERSION_PREFIX);"
        "import lerobot.datasets.v30.convert_dataset_v21_to_v30 as c, lerobot;"
        "print(f'converter: lerobot {lerobot.__version__} ({c.__file__})')"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=Path(__file__).parent,
                   env=converter_env(Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))))


if __name__ == "__main__":
    _check_installed()
