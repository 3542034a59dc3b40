#!/usr/bin/env python
"""Commit episodes left in a dataset's spool by a crash or a failed save.

Episodes that were saved (save_episode() was called) are committed by any open of the
dataset; this script also commits the incomplete episode an interrupted recording or a
failed write (disk full, permission) left behind (--include-partial), or deletes it
(--discard-partial). Exit status 1 when the fault is still there (nothing is deleted then).

    python scripts/recover_episodes.py data/my_dataset [--include-partial | --discard-partial]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from operating_platform.dataset import DatasetFormatError, LeRobotDataset
from operating_platform.dataset.format import DEFAULT_VIDEO_CODEC


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="dataset directory (holds meta/info.json)")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--include-partial", action="store_true", help="also commit unsaved partial episodes")
    choice.add_argument("--discard-partial", action="store_true", help="delete unsaved partial episodes")
    parser.add_argument("--vcodec", default=DEFAULT_VIDEO_CODEC, help="codec for re-encoded videos (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        before = LeRobotDataset.open(args.root, use_async_saver=False, vcodec=args.vcodec, recover_partial=args.include_partial)
    except (FileNotFoundError, DatasetFormatError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.discard_partial:
        for path in before.partial_episodes:
            shutil.rmtree(path)
            print(f"deleted partial episode {path}")
        before.partial_episodes = []
    stopped = before.saving_stopped
    before.close()
    print(f"{args.root}: {before.num_episodes} episodes, {before.num_frames} frames committed; "
          f"{len(before.partial_episodes)} partial episode(s) left in the spool")
    if stopped:  # the fault is still there (disk full, no permission): the spool keeps everything
        print(f"error: {stopped}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
