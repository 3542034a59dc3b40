#!/usr/bin/env python
"""Validate a recorded dataset against the LeRobot v2.1 or v3.0 contract (its info.json says which).

    python scripts/validate_dataset_format.py --target data/my_dataset
    python scripts/validate_dataset_format.py --reference data/known_good --target data/my_dataset --verbose
    python scripts/validate_dataset_format.py --target data/my_dataset --json

Exit status: 0 valid, 1 a check failed, 2 bad arguments (missing/not a directory).
The checks live in operating_platform/dataset/validate.py (v2.1) and dataset/v30/validate.py (v3.0).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without installing

from operating_platform.dataset import format as fmt  # noqa: E402
from operating_platform.dataset.v30.validate import validate_v30  # noqa: E402
from operating_platform.dataset.validate import DatasetPathError, validate_dataset  # noqa: E402

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line (argparse's default prints the whole usage block first)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _OneLineParser(
        prog="validate_dataset_format.py",
        description="Check a LeRobot v2.1 or v3.0 dataset: structure, metadata, parquet, decoded videos, stats.",
    )
    parser.add_argument("--target", required=True, type=Path, help="dataset root to validate (holds meta/info.json)")
    parser.add_argument("--reference", type=Path, help="known-good dataset root to compare structure and schema with")
    parser.add_argument("--verbose", "-v", action="store_true", help="show what was checked per episode and file")
    parser.add_argument("--json", action="store_true", help="print a machine-readable report instead of text")
    args = parser.parse_args(argv)

    try:
        version = fmt.read_json(args.target / fmt.INFO_PATH).get("codebase_version") if (args.target / fmt.INFO_PATH).is_file() else None
    except fmt.DatasetFormatError:
        version = None
    if version == fmt.V30:
        if args.reference is not None:
            parser.error("--reference compares v2.1 datasets only")
        report = validate_v30(args.target)
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if args.json else report.format_text(verbose=args.verbose))
        return EXIT_PASSED if report.passed else EXIT_FAILED
    try:
        report = validate_dataset(args.target, args.reference)
    except DatasetPathError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(report.format_text(verbose=args.verbose))
    return EXIT_PASSED if report.passed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
