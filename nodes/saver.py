"""dora node `saver`: writes the recorder's episode stream into the dataset; publishes `status` (the ack)."""

import functools
import os
import signal
import sys

from operating_platform.dataflow.runtime import connect, emitter, run_events
from operating_platform.dataflow.saver import Saver, SaverConfig, recover_command


def main() -> None:
    config = SaverConfig.from_env()
    # Encoding is background work: lower its CPU priority (inherited by the encoder threads) so
    # cameras, arms and the recorder stay on time when the machine is busy.
    os.nice(config.saver_nice)
    say = functools.partial(print, flush=True)
    # dora sends SIGTERM before its SIGKILL at the end of the stop grace period: keep committing
    # until then, and say how to commit what a kill leaves in the spool.
    notice = f"[saver] SIGTERM: still committing; if killed, commit the rest with: {recover_command(config.dataset_root)}\n"
    signal.signal(signal.SIGTERM, lambda *_: os.write(sys.stderr.fileno(), notice.encode()))  # no print(): it may interrupt one
    node = connect("saver")
    saver = Saver(config.open_dataset, emitter(node), say=say,
                  drain_timeout_s=config.async_save_timeout_s * config.async_save_queue_size)
    # dora's STOP is the last event (the stream ends after it): the episode in progress is saved then.
    run_events(node, saver.on_input, done=lambda: saver.should_exit, on_stop=lambda: saver.finish("stop"),
               on_closed=saver.on_closed)
    saver.finish("stop")  # the event stream ended without STOP or finish: same as STOP
    if saver.errors:
        raise SystemExit("saver: " + "; ".join(saver.errors))


if __name__ == "__main__":
    main()
