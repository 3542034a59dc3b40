"""Real cameras behind the CameraSource seam (opencv.py); the camera node (dataflow/camera.py) picks the source."""
