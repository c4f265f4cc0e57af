"""Run the `prefect` CLI against the test stack, as a user would."""

from __future__ import annotations

import subprocess
from pathlib import Path

from proxima.stack.services import BIN, client_env

ROOT = Path(__file__).resolve().parents[1]


def prefect(args: list[str], stack, settings, timeout: float = 300) -> subprocess.CompletedProcess:
    """``prefect ARGS`` with the stack's client environment, from the project root."""
    return subprocess.run(
        [str(BIN / "prefect"), *args],
        env=client_env(stack, settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
