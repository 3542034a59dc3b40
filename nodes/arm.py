"""dora node `arm_leader` / `arm_follower`: publishes `joint` every tick; a follower obeys `action`.

Settings: ARM_DRIVER (sim|so101), ARM_ROLE (leader|follower), ARM_PORT, ARM_CALIBRATION.
"""

import os

from operating_platform.dataflow.arm import ArmPublisher, arm_from_env
from operating_platform.dataflow.runtime import connect, emitter, run_events
from operating_platform.dataflow.settings import EnvSettings


def main() -> None:
    role = EnvSettings(os.environ, "arm").arm_role
    try:
        driver = arm_from_env()
    except Exception as exc:  # a bad port, servo or calibration file: one line in the node's log, not a traceback
        raise SystemExit(f"arm_{role}: cannot start: {type(exc).__name__}: {exc}") from None
    node = connect(f"arm_{role}")
    arm = ArmPublisher(driver, emitter(node), role=role)

    def on_input(input_id, value, metadata):
        if input_id == "tick":
            arm.on_tick()
        elif input_id == "action":
            arm.on_action(value, metadata)

    try:
        run_events(node, on_input, until_closed="recorder_done")  # until the recorder exits
    finally:
        arm.close()


if __name__ == "__main__":
    main()
