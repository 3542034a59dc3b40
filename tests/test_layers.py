"""Imports point down: the device layer (hardware/) knows nothing of the simulator, the dataflow, the
dataset or the console; the simulator never reaches into the dataflow or the console."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "operating_platform"
FORBIDDEN = {
    "hardware": ("simulation", "dataflow", "dataset", "saving", "training", "core"),
    "simulation": ("dataflow", "saving", "training", "core"),
}


def imported_packages(source: str, package: tuple[str, ...]) -> set[str]:
    """The operating_platform sub-packages imported by `source`, a module of `package` (absolute or relative)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)]
            names = [".".join(["operating_platform", *base, *filter(None, [node.module])])]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        found |= {n.split(".")[1] for n in names if n.startswith("operating_platform.")}
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer):
    offending = {}
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        package = path.relative_to(PACKAGE).parent.parts
        offending[str(path.relative_to(PACKAGE))] = imported_packages(path.read_text(), package) & set(FORBIDDEN[layer])
    assert {k: sorted(v) for k, v in offending.items() if v} == {}


def test_the_checker_sees_relative_and_absolute_imports():
    source = "from operating_platform.dataset import LeRobotDataset\nfrom ..dataflow import settings\nfrom .base import X\n"
    assert imported_packages(source, ("hardware", "cameras")) == {"dataset", "hardware"}
    assert imported_packages(source, ("hardware",)) == {"dataset", "dataflow", "hardware"}
