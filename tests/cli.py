"""Running the `proxima` CLI as a user of the test stack does."""

from __future__ import annotations

import subprocess
import sys

from proxima.config import StackConfig
from proxima.settings import ProximaSettings
from proxima.stack.services import client_env


def proxima(
    stack: StackConfig, settings: ProximaSettings, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``proxima ARGS`` in a subprocess with the stack's client environment."""
    return subprocess.run(
        [sys.executable, "-m", "proxima.cli", *args],
        env=client_env(stack, settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
