"""The STS3215 control-table registers the SO-101 uses (addresses from Feetech's STS/SMS manual).

Sign bits: Homing_Offset keeps its sign in bit 11, velocities in bit 15
(sign-magnitude); everything else here is unsigned. EEPROM registers
(address < 40) are only writable while the servo's Lock register is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

STS3215_MODEL_NUMBER = 777
STS3215_RESOLUTION = 4096  # encoder steps per turn
DEFAULT_BAUDRATE = 1_000_000
EEPROM_END = 40  # registers below this address persist across power cycles


@dataclass(frozen=True)
class Register:
    name: str
    address: int
    size: int
    sign_bit: int | None = None
    read_only: bool = False

    @property
    def in_eeprom(self) -> bool:
        return self.address < EEPROM_END


_REGISTERS = [
    Register("Model_Number", 3, 2, read_only=True),
    Register("ID", 5, 1),
    Register("Baud_Rate", 6, 1),
    Register("Return_Delay_Time", 7, 1),
    Register("Min_Position_Limit", 9, 2),
    Register("Max_Position_Limit", 11, 2),
    Register("P_Coefficient", 21, 1),
    Register("D_Coefficient", 22, 1),
    Register("I_Coefficient", 23, 1),
    Register("Homing_Offset", 31, 2, sign_bit=11),
    Register("Operating_Mode", 33, 1),
    Register("Torque_Enable", 40, 1),
    Register("Acceleration", 41, 1),
    Register("Goal_Position", 42, 2),
    Register("Goal_Velocity", 46, 2, sign_bit=15),
    Register("Lock", 55, 1),
    Register("Present_Position", 56, 2, read_only=True),
    Register("Present_Velocity", 58, 2, sign_bit=15, read_only=True),
    Register("Present_Load", 60, 2, read_only=True),
    Register("Present_Voltage", 62, 1, read_only=True),
    Register("Present_Temperature", 63, 1, read_only=True),
    Register("Moving", 66, 1, read_only=True),
]

STS3215: dict[str, Register] = {register.name: register for register in _REGISTERS}

OPERATING_MODE_POSITION = 0


def register(name: str) -> Register:
    try:
        return STS3215[name]
    except KeyError:
        raise KeyError(f"unknown STS3215 register {name!r}; known: {', '.join(STS3215)}") from None

