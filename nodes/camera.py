"""dora node `camera_*`: publishes `image` every tick. Settings: see dataflow.yml (CAMERA_*)."""

import os

from operating_platform.dataflow.camera import CameraPublisher, camera_from_env
from operating_platform.dataflow.runtime import connect, emitter, run_events
from operating_platform.dataflow.settings import EnvSettings


def main() -> None:
    name = EnvSettings(os.environ, "camera").camera_name
    try:
        source = camera_from_env()
    except Exception as exc:  # a missing device or file: one line in the node's log, not a traceback
        raise SystemExit(f"camera_{name}: cannot start: {type(exc).__name__}: {exc}") from None
    node = connect(f"camera_{name}")
    camera = CameraPublisher(source, emitter(node), name=name)
    try:
        # Runs until the recorder exits (its `done` output, our `recorder_done` input, closes).
        run_events(node, lambda input_id, value, metadata: camera.on_tick() if input_id == "tick" else None,
                   until_closed="recorder_done")
    finally:
        camera.close()


if __name__ == "__main__":
    main()
