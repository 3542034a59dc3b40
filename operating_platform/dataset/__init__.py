"""LeRobot v2.1 datasets: the format (format.py), recording into one (writer.py), checking one (validate.py)."""

from .format import DatasetFormatError, build_features
from .writer import LeRobotDataset

__all__ = ["LeRobotDataset", "build_features", "DatasetFormatError"]
