"""dora node `recorder`: samples arms + cameras at FPS, runs episodes, streams them to the saver."""

from operating_platform.dataflow.recorder import Recorder, RecorderConfig
from operating_platform.dataflow.runtime import connect, dora_messages_log, emitter, run_events


def main() -> None:
    config = RecorderConfig.from_env()
    node = connect("recorder")
    print(f"[recorder] dora's own messages of each node: {dora_messages_log(node.dataflow_id(), '<node>')}", flush=True)
    recorder = Recorder(config, emitter(node))
    # Runs until the saver acknowledged `finish` (outputs still queued are dropped when a node exits).
    run_events(node, recorder.on_input, done=lambda: recorder.done, on_stop=recorder.on_dora_stop,
               on_closed=recorder.on_closed)
    recorder.on_dora_stop()  # the event stream ended without STOP: nothing can be sent any more
    if recorder.errors:
        raise SystemExit("recorder: " + "; ".join(recorder.errors))


if __name__ == "__main__":
    main()
