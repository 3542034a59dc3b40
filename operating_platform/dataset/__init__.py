"""LeRobot datasets: the v2.1 format (format.py), recording (writer.py), checking (validate.py);
v3.0, the default, in v30/ (layout, packing, validation, conversion)."""

from .format import DatasetFormatError, build_features
from .writer import LeRobotDataset

__all__ = ["LeRobotDataset", "build_features", "DatasetFormatError"]
