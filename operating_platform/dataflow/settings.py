"""Reading node settings from the environment (dataflow.yml `env:`), with errors that name the variable."""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")
TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no")


def env_bool(raw: str) -> bool:
    if raw.lower() in TRUE:
        return True
    if raw.lower() in FALSE:
        return False
    raise ValueError(f"{raw!r} is not a boolean (true/false)")


env_bool.__name__ = "boolean"


def setting(env: dict[str, str], node: str, name: str, cast: Callable[[str], T], default: T) -> T:
    """env[name] converted by `cast`; `default` when unset or empty."""
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return cast(raw)
    except ValueError:
        raise ValueError(f"{node}: environment {name}={raw!r} is not a valid {cast.__name__}") from None
