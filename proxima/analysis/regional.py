"""A region's share of an analysis: its blocks mapped over the region's cluster (or run
here, in turn), each task's CPU time measured on the worker that ran it, and the
results merged into the region's partial aggregates or its piece of a subset.

Every block task reports the CPU-seconds of its own thread (``time.thread_time``), so
a run's compute is its own even when other runs share the workers at the same time.

With a partial store, a block task first looks up its block's partial by what
determines it (``kernels.block_identity``) and reads the data only when none is kept;
partials are exact and combine in any order, so a reused block is the block computed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import xarray as xr

from proxima.analysis.kernels import (
    BLOCK_BYTES,
    Block,
    EmptySelection,
    KernelSpec,
    block_identity,
    block_partial,
    blocks,
)
from proxima.analysis.partials import combine
from proxima.analysis.subset import block_subset, finish, merge_blocks

Progress = Callable[[int, int, int], None]


class PartialCache(Protocol):
    """Where a region keeps its blocks' partials (``proxima.reuse.store.PartialStore``)."""

    def get(self, identity: dict[str, Any]) -> tuple[Any | None, str]:
        """(the stored partial or None, "reused" | "computed" | "corrupt")."""

    def put(self, identity: dict[str, Any], value: Any) -> None:
        """Keep ``value`` as the partial of ``identity``."""


@dataclass
class Usage:
    """What a region's share cost on its workers: CPU-seconds and tasks, summed, and how
    many blocks were reused, computed, or found corrupt in the store and computed again.
    """

    cpu_s: float = 0.0
    tasks: int = 0
    blocks: dict[str, int] = field(default_factory=dict)


def reusing_block_partial(
    store: PartialCache, root: str, spec: KernelSpec, block: Block
) -> tuple[xr.Dataset | None, int, str]:
    """``block_partial`` through the store: (partial or None, bytes read, status)."""
    identity = block_identity(root, spec, block)
    if identity is None:
        return None, 0, "empty"
    kept, status = store.get(identity)
    if kept is not None:
        return kept, 0, status
    part, nbytes = block_partial(root, spec, block)
    if part is not None:
        store.put(identity, part)
    return part, nbytes, status


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
    key: str,
    workers: list[str] | None = None,
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
        futures = client.map(
            _metered,
            [fn] * n,
            [root] * n,
            [spec] * n,
            todo,
            key=key,
            pure=False,
            priority=-n,
            workers=workers,
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
    store: PartialCache | None = None,
    workers: list[str] | None = None,
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
        store: The region's partial store (partial aggregates only; a subset is read).
        workers: Only these workers of the cluster (None: any), e.g. to measure scaling.

    Returns:
        (the small merged partial aggregates, decoded bytes of selected data read).

    Raises:
        EmptySelection: No asset has a selected time step.
    """
    usage = usage if usage is not None else Usage()
    subset = spec.reduction == "none"
    fn: Callable[..., Any] = block_subset if subset else block_partial
    if store is not None and not subset:
        fn = partial(reusing_block_partial, store)
    pieces: list[xr.Dataset] = []
    merged: xr.Dataset | None = None
    total = 0
    # keys named after the block function (block_partial-…), as the dashboard and the
    # fault-injection tests know them, not after the meter or the store around it
    key = block_subset.__name__ if subset else block_partial.__name__
    mapped = _map_blocks(fn, root, spec, client, usage, block_bytes, key, workers)
    for done, todo, out in mapped:
        part, nbytes, *how = out  # the store adds how the block was got
        status = how[0] if how else "computed"
        if part is not None:
            usage.blocks[status] = usage.blocks.get(status, 0) + 1
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


__all__ = ["PartialCache", "Usage", "compute_partial", "reusing_block_partial"]
