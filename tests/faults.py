"""Faults injected into the real regional Dask clusters through worker plugins.

The plugin classes travel by value (cloudpickle), so the workers need not import
this test module; the scheduler re-installs them on every restarted worker, which
is what makes "a task that kills its worker every time" possible.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import cloudpickle
from distributed import Client
from distributed.diagnostics.plugin import WorkerPlugin

cloudpickle.register_pickle_by_value(sys.modules[__name__])


class KillOnTask(WorkerPlugin):
    """SIGKILL the worker process when it starts executing a task whose key matches.

    Args:
        match: Substring of the task key (e.g. a dask key prefix of the kernel).
        ledger: A directory; each kill leaves a file there (kills are counted from it).
        times: Kill at most this many times (None: every time).
    """

    def __init__(self, match: str, ledger: str, times: int | None = None) -> None:
        self.match, self.ledger, self.times = match, ledger, times

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish != "executing" or self.match not in str(key):
            return
        ledger = Path(self.ledger)
        if self.times is not None and len(list(ledger.iterdir())) >= self.times:
            return
        (ledger / f"kill-{len(list(ledger.iterdir()))}-{os.getpid()}").write_text(str(key))
        os.kill(os.getpid(), signal.SIGKILL)


class Stall(WorkerPlugin):
    """Hold the worker for ``seconds`` when a matching task starts, once per worker
    process (keeps a run mid-flight long enough to kill it there).

    Args:
        match: Substring of the task key.
        seconds: How long to hold.
        marker: A file created when the hold starts, so a test can wait for the run to
            be mid-flight instead of sleeping and hoping.
    """

    def __init__(self, match: str, seconds: float, marker: str | None = None) -> None:
        self.match, self.seconds, self.marker, self.done = match, seconds, marker, False

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish == "executing" and self.match in str(key) and not self.done:
            import time

            self.done = True
            if self.marker:
                Path(self.marker).touch()
            time.sleep(self.seconds)


class RecordKeys(WorkerPlugin):
    """Append every executed task key to a file (to find what to match)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish == "executing":
            with open(self.path, "a") as f:
                f.write(f"{key}\n")


def region_client(name: str) -> Client:
    """A client of the test stack's region ``name`` (with its TLS credentials)."""
    from proxima.platform import from_stack

    region = from_stack().region(name)
    return Client(
        region.scheduler_address, security=region.dask_security(), timeout=10, set_as_default=False
    )


def wait_for(path: Path, timeout: float = 120.0) -> None:
    """Wait until ``path`` exists (a Stall marker); fail with the reason otherwise."""
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.1)


def install(client: Client, plugin: WorkerPlugin, name: str) -> None:
    """Install ``plugin`` on every current and future worker of the cluster."""
    client.register_plugin(plugin, name=name)


def remove(client: Client, name: str) -> None:
    """Remove the plugin so restarted workers come back clean."""
    client.unregister_worker_plugin(name)
