"""How flows find the platform: Prefect blocks when saved, else the local stack file."""

from __future__ import annotations

from proxima.platform import Platform, from_stack


def load_platform() -> Platform:
    """The platform the current run works on."""
    return from_stack()
