"""The training library points down only: it never imports hardware or the simulation, and the core never
imports the reference harness built on it."""

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import operating_platform.training as training
import operating_platform.training.reference as reference

_PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def modules_loaded_by(*names: str) -> list[str]:
    """Every module a fresh interpreter holds after importing `names` (transitive imports included)."""
    out = subprocess.run([sys.executable, "-c", _PROBE, *names], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def submodules(package) -> list[str]:
    return [m.name for m in pkgutil.iter_modules(package.__path__, package.__name__ + ".") if not m.ispkg]


def test_core_training_imports_neither_hardware_nor_simulation_nor_the_reference_harness():
    core = submodules(training)
    assert "operating_platform.training.loader" in core and len(core) > 8
    loaded = modules_loaded_by(*core)
    assert [m for m in loaded if m.startswith(("operating_platform.hardware", "operating_platform.simulation",
                                               reference.__name__))] == []


def test_reference_harness_imports_neither_hardware_nor_simulation():
    harness = submodules(reference)
    assert {"operating_platform.training.reference.harness", "operating_platform.training.reference.mock"} <= set(harness)
    loaded = modules_loaded_by(*harness)
    assert [m for m in loaded if m.startswith(("operating_platform.hardware", "operating_platform.simulation"))] == []
