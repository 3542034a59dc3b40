"""Write the `env:` block of dataflow.yml and dataflow_so101.yml from the settings schema.

    python scripts/sync_dataflow_env.py          # rewrite the files
    python scripts/sync_dataflow_env.py --check  # exit 1 naming each file that disagrees

Defaults and comments live in operating_platform/dataflow/settings.py; change them there, then run this.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from operating_platform.core.dataflow import DATAFLOW_FILES, REPO_ROOT, synced_dataflow_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files whose env block differs")
    args = parser.parse_args(argv)
    stale = []
    for name, changes in DATAFLOW_FILES.items():
        path = Path(REPO_ROOT) / name
        text = path.read_text()
        synced = synced_dataflow_file(text, changes)
        if synced == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(synced)
            print(f"{name}: env block rewritten from the settings schema")
    if args.check and stale:
        print(f"env block differs from the settings schema: {', '.join(stale)} (run python scripts/sync_dataflow_env.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
