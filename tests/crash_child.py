"""Child process for the SIGKILL crash test: records, then kills itself with SIGKILL at a named point.

The kill points wrap the writer's own I/O steps in this process only; the production code is
unchanged. Usage: python tests/crash_child.py ROOT KILL_POINT sync|async [v2.1|v3.0]
(KILL_POINT `random`: record episodes until the parent kills the process.)
In v3.0, episode 0 is packed before arming; PACK_KILL_POINTS kill the pack of episode 1 at close.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from dataset_factory import create, make_frame, record_episode  # beside this script, so importable when it runs

import operating_platform.dataset.commit as commit  # noqa: E402
import operating_platform.dataset.format as fmt  # noqa: E402
import operating_platform.dataset.video as video  # noqa: E402
import operating_platform.dataset.writer as writer  # noqa: E402
import operating_platform.dataset.v30.pack as pack  # noqa: E402


KILL_POINTS = [  # where arm() can kill; `random` (parent kills) is separate
    "mid_recording",
    "mid_encode",
    "mid_parquet",
    "after_parquet_staged",
    "after_files_moved",
    "mid_metadata",
    "mid_info_write",
    "after_info_write",
]
PACK_KILL_POINTS = [  # v3.0 only: steps of the pack that moves committed episode 1 into the shared files
    "mid_pack_video",
    "mid_pack_parquet",
    "pack_journal_written",
    "mid_pack_renames",
    "mid_pack_info_write",
    "after_pack_info_write",
]


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    """Install the kill for `point`; only I/O of episode 1 (after arming) triggers it."""
    if point == "mid_encode":
        original = video.VideoFileWriter.write
        calls = [0]

        def write(self, rgb):
            calls[0] += 1
            if calls[0] == 10:
                die()
            original(self, rgb)

        video.VideoFileWriter.write = write
    elif point in ("mid_parquet", "after_parquet_staged"):
        original_parquet = commit.write_table_durably

        def write_table(table, path):
            if point == "after_parquet_staged":
                original_parquet(table, path)
            else:
                import pyarrow as pa
                import pyarrow.parquet as pq

                sink = pa.BufferOutputStream()
                pq.write_table(table, sink)
                data = sink.getvalue().to_pybytes()
                path.write_bytes(data[: len(data) // 2])
            die()

        commit.write_table_durably = write_table
    elif point == "after_files_moved":
        fmt.write_jsonl_atomic = lambda *a, **k: die()
    elif point in ("mid_metadata", "mid_info_write", "after_info_write"):
        original_bytes = fmt.write_bytes_atomic

        def write_bytes(path, data, durable=True):  # noqa: F811 - one of two kill points on info.json
            if path.name != "info.json":
                return original_bytes(path, data, durable)
            if point == "mid_info_write":
                (path.parent / (path.name + fmt.TEMP_SUFFIX)).write_bytes(data[: len(data) // 3])
            elif point == "after_info_write":
                original_bytes(path, data, durable)
            die()

        fmt.write_bytes_atomic = write_bytes
    elif point == "mid_pack_video":
        def concat(sources, out, fps):
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(sources[0][0].read_bytes()[:1000])
            die()

        pack.concat_videos = concat
    elif point == "mid_pack_parquet":
        def write_data_file(target, data_files, out):
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data_files[target.episodes[0]].read_bytes()[:500])  # no footer
            die()

        pack._write_data_file = write_data_file
    elif point == "pack_journal_written":
        pack._apply = lambda root, journal: die()
    elif point == "mid_pack_renames":
        renames = [0]

        def replace(src, dst):
            os.replace(src, dst)
            renames[0] += 1
            if renames[0] == 2:
                die()

        pack.os = type("os", (), {"replace": staticmethod(replace), "fsync": staticmethod(os.fsync)})
    elif point in ("mid_pack_info_write", "after_pack_info_write"):
        original_bytes = fmt.write_bytes_atomic

        def write_bytes(path, data, durable=True):
            if path.name != "info.json":
                return original_bytes(path, data, durable)
            if point == "mid_pack_info_write":
                (path.parent / (path.name + fmt.TEMP_SUFFIX)).write_bytes(data[: len(data) // 3])
            else:
                original_bytes(path, data, durable)
            die()

        fmt.write_bytes_atomic = write_bytes
    elif point not in ("mid_recording", "random"):
        raise SystemExit(f"unknown kill point {point!r}")


def main() -> None:
    root, point, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    version = sys.argv[4] if len(sys.argv) > 4 else "v2.1"
    ds = create(root, use_async_saver=(mode == "async"), live_encoding=(point != "mid_encode"), codebase_version=version)
    record_episode(ds, 0, 20)
    ds.save_episode()
    ds.wait_for_save_completion()
    if version == "v3.0":
        ds.pack()  # the pack of episode 1 then extends the shared files
    print("EPISODE0_COMMITTED", flush=True)
    if point in PACK_KILL_POINTS:
        record_episode(ds, 1, 20)
        ds.save_episode()
        ds.wait_for_save_completion()
        print("EPISODE1_COMMITTED", flush=True)
        arm(point)
        ds.close()
        print("NOT_KILLED", flush=True)
        return
    arm(point)
    if point == "random":  # record until the parent kills us at a random moment
        for ep in range(1, 10_000):
            record_episode(ds, ep, 20)
            print(f"HANDED_OVER {ds.save_episode()}", flush=True)
    for i in range(20):
        if point == "mid_recording" and i == 15:
            die()
        ds.add_frame(make_frame(1, i), task="pick the cube")
    ds.save_episode()
    ds.wait_for_save_completion()
    print("NOT_KILLED", flush=True)


if __name__ == "__main__":
    main()
