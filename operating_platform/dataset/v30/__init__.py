"""LeRobot v3.0: its layout (layout.py), packing committed episodes into it (pack.py, remux.py),
recording into one (recording.py), checking one (validate.py), converting to and from v2.1 (convert.py)."""
