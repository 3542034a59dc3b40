#!/usr/bin/env python
"""Convert a dataset between LeRobot v2.1 and v3.0, without re-encoding video.

    python scripts/convert_dataset.py --to v3.0 data/old_v21 data/new_v30   # for LeRobot >= 0.4
    python scripts/convert_dataset.py --to v2.1 data/rec_v30 data/rec_v21   # for v2.1-only trainers

SRC is left untouched; DST must be new (or empty). Parquet values are copied unchanged and
video packets remuxed; the result is validated before this exits (0 valid, 1 not, 2 bad arguments).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without installing

from operating_platform.dataset import format as fmt  # noqa: E402
from operating_platform.dataset.v30 import layout  # noqa: E402
from operating_platform.dataset.v30.convert import convert  # noqa: E402
from operating_platform.dataset.v30.validate import validate_v30  # noqa: E402
from operating_platform.dataset.validate import validate_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convert_dataset.py", description=__doc__.splitlines()[0])
    parser.add_argument("--to", required=True, choices=fmt.CODEBASE_VERSIONS, help="format of the new dataset")
    parser.add_argument("src", type=Path, help="dataset to convert (holds meta/info.json)")
    parser.add_argument("dst", type=Path, help="new dataset directory")
    parser.add_argument("--data-files-size-in-mb", type=float, default=layout.DEFAULT_DATA_FILE_SIZE_IN_MB)
    parser.add_argument("--video-files-size-in-mb", type=float, default=layout.DEFAULT_VIDEO_FILE_SIZE_IN_MB)
    args = parser.parse_args(argv)
    options = ({"data_files_size_in_mb": args.data_files_size_in_mb, "video_files_size_in_mb": args.video_files_size_in_mb}
               if args.to == fmt.V30 else {})
    try:
        info = convert(args.src, args.dst, args.to, **options)
    except (fmt.DatasetFormatError, FileExistsError, FileNotFoundError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    report = validate_v30(args.dst) if args.to == fmt.V30 else validate_dataset(args.dst)
    print(f"{args.src} -> {args.dst}: LeRobot {args.to}, {info.total_episodes} episodes, {info.total_frames} frames")
    if not report.passed:
        print(report.format_text())
        return 1
    print("validated: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
