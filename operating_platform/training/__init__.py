"""Training side: read recorded LeRobot v2.1 datasets, load batches resumably, track hard examples.

    from operating_platform.training import LeRobotReader, create_data_loader
    loader = create_data_loader(LeRobotReader("data/sim_demo", action_horizon=16), batch_size=32,
                                seed=0, num_workers=2, persistent_iterator=True)
"""

from .hard_examples import HardExampleTracker
from .loader import create_data_loader
from .reader import LeRobotReader

__all__ = ["HardExampleTracker", "LeRobotReader", "create_data_loader"]
