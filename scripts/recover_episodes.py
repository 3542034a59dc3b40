#!/usr/bin/env python
"""Commit episodes left in a dataset's spool by a crash or a failed save.

Episodes that were saved (save_episode() was called) are committed by any open of the
dataset; this script also commits the incomplete episode an interrupted recording or a
failed write (disk full, permission) left behind (--include-partial), or deletes it
(--discard-partial). The frames a dead saver never acknowledged, left by the recorder in
its note, join that episode first (--include-partial) or are deleted with it.
Exit status 1 when the fault is still there (nothing is deleted then).

    python scripts/recover_episodes.py data/my_dataset [--include-partial | --discard-partial]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from operating_platform.dataflow.note_replay import note_frames, replay_note
from operating_platform.dataflow.stop_note import NOTE_DIR, clear_stop_note
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
        if args.include_partial and note_frames(args.root) is not None:
            replay_into(args.root, args.vcodec)
        before = LeRobotDataset.open(args.root, use_async_saver=False, vcodec=args.vcodec, recover_partial=args.include_partial)
    except (FileNotFoundError, DatasetFormatError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.discard_partial:
        for path in before.partial_episodes:
            shutil.rmtree(path)
            print(f"deleted partial episode {path}")
        before.partial_episodes = []
    if args.discard_partial and (frames := note_frames(args.root)) is not None:
        clear_stop_note(args.root)
        print(f"deleted the recorder's note ({frames} frames the saver never acknowledged)")
    elif not args.include_partial and (frames := note_frames(args.root)) is not None:
        print(f"the recorder's note {args.root / NOTE_DIR} holds {frames} frames the saver never acknowledged; "
              "--include-partial adds them to the partial episode")
    stopped = before.saving_stopped
    before.close()
    print(f"{args.root}: {before.num_episodes} episodes, {before.num_frames} frames committed; "
          f"{len(before.partial_episodes)} partial episode(s) left in the spool")
    if stopped:  # the fault is still there (disk full, no permission): the spool keeps everything
        print(f"error: {stopped}", file=sys.stderr)
        return 1
    return 0


def replay_into(root: Path, vcodec: str) -> None:
    """The note's frames join the partial episode before it is committed (dataflow/note_replay.py)."""
    ds = LeRobotDataset.open(root, use_async_saver=False, vcodec=vcodec, live_encoding=False)
    try:
        if not ds.saving_stopped:  # else the note waits, like the spool, for the fault to be fixed
            for line in replay_note(ds):
                print(line)
    finally:
        ds.close()


if __name__ == "__main__":
    sys.exit(main())
