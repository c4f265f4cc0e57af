"""Which of a region's Dask workers a share's blocks may use.

Dask's priorities order the tasks that wait, but never stop a running one: a small,
interactive share queued behind a large run's blocks waits for blocks already running
on every worker to finish (seconds each under load). A region may therefore keep one
worker for small shares (``interactive_worker`` in its stack config, named
``<region>-interactive``): the blocks of any other share are restricted to the other
workers, and small shares may use every worker, that one included.
"""

from __future__ import annotations

from typing import Any


def interactive_worker_name(region: str) -> str:
    """The name the stack gives a region's worker kept for small shares."""
    return f"{region}-interactive"


def for_share(scheduler_info: dict[str, Any], region: str, small: bool) -> list[str] | None:
    """The worker addresses a share's blocks may run on (None: any).

    Args:
        scheduler_info: ``Client.scheduler_info()`` of the region's cluster.
        region: The region's name.
        small: Whether the share is small (``lanes.lane(...) == "small"``).
    """
    workers = scheduler_info.get("workers", {})
    kept = interactive_worker_name(region)
    batch = [a for a, w in workers.items() if not str(w.get("name", "")).startswith(kept)]
    if small or len(batch) == len(workers) or not batch:
        return None
    return batch
