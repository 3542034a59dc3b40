#!/usr/bin/env python
"""Pack a LeRobot v3.0 dataset now: commit what a crash left saved, move every committed
episode from the hidden store into the shared v3.0 files, so LeRobot sees all of them.

    python scripts/pack_dataset.py data/my_task

Recording packs at close and every open does this too; this is the same open, on demand
(not while a recording into the same dataset is running). Exit 0 done, 1 the pack failed (disk
full, no permission: nothing is lost, run it again once fixed), 2 not a v3.0 dataset.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without installing

from operating_platform.dataset import DatasetFormatError, LeRobotDataset  # noqa: E402
from operating_platform.dataset import format as fmt  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="dataset directory (holds meta/info.json)")
    parser.add_argument("--vcodec", default=fmt.DEFAULT_VIDEO_CODEC, help="codec for episodes re-encoded from the spool")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        ds = LeRobotDataset.open(args.root, use_async_saver=False, vcodec=args.vcodec, codebase_version=fmt.V30)
    except (FileNotFoundError, DatasetFormatError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    opened = ds.last_pack
    ds.close()
    if ds.pack_error:  # the fault is still there: every episode stays in the store
        print(f"error: {ds.pack_error}", file=sys.stderr)
        return 1
    print(f"{args.root}: packed {opened.episodes + ds.last_pack.episodes} episode(s) in {opened.seconds + ds.last_pack.seconds:.2f} s; "
          f"{ds.num_episodes} episodes, {ds.num_frames} frames in the v3.0 files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
