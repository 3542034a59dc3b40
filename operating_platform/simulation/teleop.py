"""A simulated teleoperation session on a simulated clock: frames as the recorder would build them.

Leader drives follower, cameras film the scene; time advances by exactly 1/fps per frame,
so the same arguments always give the same frames (and datasets), however fast the
machine is. For scripts, benchmarks and tests that need realistic episodes without
running the dataflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from operating_platform.dataset import LeRobotDataset, build_features
from operating_platform.dataset.format import ACTION_KEY, IMAGE_KEY_PREFIX, STATE_KEY
from operating_platform.hardware.base import SO101_JOINT_NAMES

from .arm import SimFollowerArm, SimLeaderArm
from .camera import SimCamera

JOINT_NAMES = list(SO101_JOINT_NAMES)
SIM_TASKS = ["pick up the cube", "push the block to the left"]


class SimTeleopSession:
    def __init__(self, cameras: tuple[str, ...] = ("top", "wrist"), image_hw: tuple[int, int] = (480, 640), fps: int = 30):
        self.fps = fps
        self.now = 0.0
        self.image_hw = image_hw
        h, w = image_hw
        self.cameras = {IMAGE_KEY_PREFIX + cam: SimCamera(cam, width=w, height=h, fps=fps, clock=self.clock) for cam in cameras}
        self.follower = SimFollowerArm(clock=self.clock)

    def clock(self) -> float:
        return self.now

    def features(self) -> dict:
        return build_features(JOINT_NAMES, {key.removeprefix(IMAGE_KEY_PREFIX): self.image_hw for key in self.cameras})

    def episode(self, episode_index: int, num_frames: int) -> Iterator[dict[str, np.ndarray]]:
        """Frames of one episode; each operator (episode) moves differently."""
        leader = SimLeaderArm(f"operator-{episode_index}", clock=self.clock)
        for _ in range(num_frames):
            goal = leader.read_joints()
            self.follower.write_goal(goal)
            frame = {STATE_KEY: self.follower.read_joints(), ACTION_KEY: goal}
            frame.update({key: cam.read() for key, cam in self.cameras.items()})
            yield frame
            self.now += 1.0 / self.fps


def record_sim_dataset(
    root: str | Path,
    num_episodes: int = 3,
    frames_per_episode: int = 30,
    cameras: tuple[str, ...] = ("top", "wrist"),
    image_hw: tuple[int, int] = (48, 64),
    fps: int = 30,
    vcodec: str = "libx264",
    repo_id: str | None = None,
    codebase_version: str = "v2.1",
) -> Path:
    """Write `num_episodes` teleoperation episodes to `root` (which must not hold a dataset yet)."""
    root = Path(root)
    session = SimTeleopSession(cameras, image_hw, fps)
    ds = LeRobotDataset.create(repo_id or root.name, root=root, fps=fps, features=session.features(),
                               robot_type="so101", use_async_saver=False, vcodec=vcodec,
                               codebase_version=codebase_version)
    try:
        for episode in range(num_episodes):
            for frame in session.episode(episode, frames_per_episode):
                ds.add_frame(frame, task=SIM_TASKS[episode % len(SIM_TASKS)])
            ds.save_episode()
    finally:
        ds.close()
    return root
