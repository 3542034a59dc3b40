"""Feetech STS3215 servo bus: protocol, control table, pyserial driver and a pty emulator for tests."""
