"""The drain and summary lines of a recording session, worded once, from the typed status.

The saver node prints its own (`dora run` shows them), the recorder its end line, the
console the operator's end-of-run summary; tests and benchmarks/loss_free_runs.py read
`Save stats: ...`, `frames recorded N, handed over N, committed N` and
`[saver] frames received N, committed N`, so these words change here or nowhere.
"""

from __future__ import annotations

from pathlib import Path

from .messages import RecorderStatus, SaverStatus


def recover_command(root: Path | str | None) -> str:
    return f"python scripts/recover_episodes.py {root} --include-partial"


def waiting_line(pending: int) -> str:
    return f"Waiting for {pending} pending saves..."


def save_stats_line(s: SaverStatus) -> str:
    return f"Save stats: queued={s.queued} completed={s.completed} failed={s.failed}"


def saver_lines(s: SaverStatus) -> list[str]:
    """The saver node's end of session: what it received and committed, what is kept and how to get it back."""
    lines = [save_stats_line(s),
             f"[saver] frames received {s.frames_received}, committed {s.frames_committed}, "
             f"discarded {s.frames_discarded}, kept in the spool {s.frames_kept_in_spool}; "
             f"sequence gaps {s.sequence_gaps}, duplicates {s.duplicates}, reordered {s.reordered}, "
             f"rejected {s.rejected or 0}"]
    if s.frames_recoverable:
        lines.append(f"[saver] ✗ {s.frames_recoverable} frames not committed, kept for recovery: "
                     f"{', '.join(s.recoverable)} — opening the dataset again commits the saved episodes; "
                     f"incomplete ones: {recover_command(s.root)}")
    return lines + [f"[saver] ✗ {error}" for error in s.errors]


def save_response(r: RecorderStatus) -> str:
    recent = ", ".join(f"{ms:g}" for ms in r.save_response_ms[-5:])
    return f"max {r.save_response_max_ms:g} over {r.save_response_count} episodes, last [{recent}]"


def recorder_line(r: RecorderStatus) -> str:
    return (f"[recorder] done: episodes recorded {r.episodes_recorded} (committed {r.episodes_saved}, "
            f"discarded {r.episodes_discarded}, slower than real time {r.slow_episodes}); frames recorded "
            f"{r.frames_kept}, handed over {r.frames_handed_over}, committed {r.frames_committed}; "
            f"stale samples skipped {r.stale_skips}, samples paused for the saver {r.backpressure_skips}; "
            f"rejected {r.rejected or 0}; save response ms {save_response(r)}")


def session_lines(r: RecorderStatus, s: SaverStatus, frames_lost: int) -> list[str]:
    """The console's end-of-run summary: recorded / handed over / committed / lost, from the saver's own figures."""
    lines = [save_stats_line(s)] if s.done else []
    return lines + [
        f"frames recorded {r.frames_kept}, handed over {s.frames_received}, committed {s.frames_committed}, "
        f"kept for recovery {s.frames_kept_in_spool}, dropped {frames_lost}, sequence gaps {s.sequence_gaps}, "
        f"dataset {s.root}",
        f"stream: duplicates {s.duplicates}, reordered {s.reordered}, rejected by the saver {s.rejected or 0}, "
        f"by the recorder {r.rejected or 0}; episodes slower than real time {r.slow_episodes}",
        f"recorder: save response ms {save_response(r)}, longest hand-over {r.send_max_ms} ms, longest sample gap "
        f"{r.sample_gap_max_ms} ms, stale samples skipped {r.stale_skips}, samples paused for the saver "
        f"{r.backpressure_skips}, input staleness {r.staleness}",
    ]
