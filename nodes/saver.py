"""dora node `saver`: writes the recorder's episode stream into the dataset; publishes `status`."""

import functools
import os

from dora import Node

from operating_platform.dataflow.runtime import emitter, run_events
from operating_platform.dataflow.saver import Saver, SaverConfig
from operating_platform.dataflow.settings import setting


def main() -> None:
    config = SaverConfig.from_env()
    # Encoding is background work: lower its CPU priority (inherited by the encoder threads) so
    # cameras, arms and the recorder stay on time when the machine is busy.
    os.nice(setting(os.environ, "saver", "SAVER_NICE", int, 5))
    node = Node()
    saver = Saver(config.open_dataset, emitter(node), say=functools.partial(print, flush=True))

    def on_input(input_id, value, metadata):
        if input_id == "episode":
            saver.on_episode(value, metadata)
        elif input_id == "tick":
            saver.on_tick()

    def on_closed(input_id):
        if input_id == "episode":  # the recorder is gone without `finish`: still drain and close
            saver.finish()

    # On STOP keep reading: the recorder answers STOP with its last frames and `finish`.
    run_events(node, on_input, done=lambda: saver.done, on_stop=lambda: None, on_closed=on_closed)
    if not saver.done:
        saver.finish()
    if saver.fatal:
        raise SystemExit(f"saver: {saver.fatal}")


if __name__ == "__main__":
    main()
