"""A region's share of an analysis: its blocks mapped over the region's cluster (or run
here, in turn), each task's CPU time measured on the worker that ran it, and the
results merged into the region's partial aggregates or its piece of a subset.

Every block task reports the CPU-seconds of its own thread (``time.thread_time``), so
a run's compute is its own even when other runs share the workers at the same time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import xarray as xr

from proxima.analysis.kernels import (
    BLOCK_BYTES,
    Block,
    EmptySelection,
    KernelSpec,
    block_partial,
    blocks,
)
from proxima.analysis.partials import combine
from proxima.analysis.subset import block_subset, finish, merge_blocks

Progress = Callable[[int, int, int], None]


@dataclass
class Usage:
    """What a region's share cost on its workers: CPU-seconds and tasks, summed."""

    cpu_s: float = 0.0
    tasks: int = 0


def _metered(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    started = time.thread_time()
    out = fn(*args)
    return out, time.thread_time() - started


def _map_blocks(
    fn: Callable[[str, KernelSpec, Block], Any],
    root: str,
    spec: KernelSpec,
    client: Any,
    usage: Usage,
    block_bytes: int,
) -> Iterator[tuple[int, int, Any]]:
    """Yield (done, total, result) for every block as it finishes, metering each."""
    todo = blocks(spec, block_bytes)
    if client is None:
        done: Iterator[tuple[Any, float]] = (_metered(fn, root, spec, b) for b in todo)
    else:
        from distributed import as_completed

        n = len(todo)
        # A request of few blocks goes ahead of one of many on a shared cluster (Dask
        # runs higher priorities first): a one-month question does not queue behind a
        # decade's blocks already waiting.
        # keys named after the block function (block_partial-…), as the dashboard and
        # the fault-injection tests know them, not after the meter around it
        futures = client.map(
            _metered,
            [fn] * n,
            [root] * n,
            [spec] * n,
            todo,
            key=fn.__name__,
            pure=False,
            priority=-n,
        )
        done = (f.result() for f in as_completed(futures, loop=client.loop))
    for count, (out, cpu_s) in enumerate(done, start=1):
        usage.cpu_s += cpu_s
        usage.tasks += 1
        yield count, len(todo), out


def compute_partial(
    root: str,
    spec: KernelSpec,
    client: Any = None,
    progress: Progress | None = None,
    usage: Usage | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> tuple[xr.Dataset, int]:
    """A region's partial aggregates: one task per block on ``client`` (or here, in turn);
    for a subset (reduction none), the region's piece of the data (see ``subset``).

    Args:
        root: The region's file system root.
        spec: What to compute.
        client: The region's Dask client; None computes here.
        progress: Told (blocks done, blocks, bytes read) as blocks finish.
        usage: Filled with the CPU-seconds and tasks the blocks took.
        block_bytes: About how many decoded bytes one task reads.

    Returns:
        (the small merged partial aggregates, decoded bytes of selected data read).

    Raises:
        EmptySelection: No asset has a selected time step.
    """
    usage = usage if usage is not None else Usage()
    subset = spec.reduction == "none"
    fn = block_subset if subset else block_partial
    pieces: list[xr.Dataset] = []
    merged: xr.Dataset | None = None
    total = 0
    for done, todo, (part, nbytes) in _map_blocks(fn, root, spec, client, usage, block_bytes):
        total += nbytes
        if progress:
            progress(done, todo, total)
        if part is None:
            continue
        if subset:
            pieces.append(part)
        else:
            merged = part if merged is None else combine([merged, part])
    if subset and pieces:
        return finish(merge_blocks(pieces)), total
    if merged is None:
        raise EmptySelection("no time step of the region's assets falls in the range")
    return merged, total


__all__ = ["Usage", "compute_partial"]
