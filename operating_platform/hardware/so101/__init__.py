"""SO-101 arms (leader/follower) on a Feetech bus: calibration files, arm drivers, calibration procedure."""
