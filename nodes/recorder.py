"""dora node `recorder`: samples arms + cameras at FPS, runs episodes, streams them to the saver."""

from dora import Node

from operating_platform.dataflow.recorder import Recorder, RecorderConfig
from operating_platform.dataflow.runtime import emitter, run_events


def main() -> None:
    config = RecorderConfig.from_env()
    node = Node()
    recorder = Recorder(config, emitter(node))
    # STOP (dora stop / Ctrl-C on `dora run`) behaves like the `e` key: save what was recorded, then finish.
    run_events(node, recorder.on_input, done=lambda: recorder.done, on_stop=recorder.stop)


if __name__ == "__main__":
    main()
