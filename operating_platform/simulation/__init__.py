"""Simulated SO-101 arms, cameras and teleoperation sessions, so everything runs and is tested without hardware.

Used by the dataflow's nodes (ARM_DRIVER=sim, CAMERA_SOURCE=sim), scripts, benchmarks and tests.
It builds on the device seams (hardware/base.py) and the dataset writer; hardware/ never imports it.
"""
