"""A region's share of an analysis: its blocks mapped over the region's cluster (or run
here, in turn), each task's CPU time measured on the worker that ran it, and the
results merged into the region's partial aggregates or its piece of a subset.

Every block task reports the CPU-seconds of its own thread (``time.thread_time``), so
a run's compute is its own even when other runs share the workers at the same time.

With a partial store, the region first identifies every block by what determines its
partial (``kernels.block_identities``: one header open per file, here, no data read),
takes the partials the store keeps, and maps only the other blocks to the cluster,
each of which stores what it computed. Partials are exact and combine in any order, so
a reused block is the block computed.
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
    block_identities,
    block_partial,
    blocks,
    unchanged_since,
)
from proxima.analysis.partials import combine
from proxima.analysis.subset import block_subset, finish, merge_blocks

Progress = Callable[[int, int, int], None]
MERGE_BATCH = 16  # at most this many block partials wait to be added into the merged


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


def storing_block_partial(
    store: PartialCache, identity: dict[str, Any], root: str, spec: KernelSpec, block: Block
) -> tuple[xr.Dataset | None, int]:
    """``block_partial``, kept in the store under ``identity`` when the file still has
    the stamp it was identified at (a file rewritten meanwhile is not kept as it was).
    """
    part, nbytes = block_partial(root, spec, block)
    if part is not None and unchanged_since(root, identity):
        store.put(identity, part)
    return part, nbytes


def _reused(
    store: PartialCache, root: str, spec: KernelSpec, todo: list[Block], usage: Usage
) -> tuple[list[xr.Dataset], list[Block], list[Callable[..., Any]]]:
    """(the partials the store keeps, the blocks still to compute, and for each the
    function that computes and stores it); the statuses counted in ``usage``.
    """
    kept: list[xr.Dataset] = []
    left: list[Block] = []
    fns: list[Callable[..., Any]] = []
    for block, identity in zip(todo, block_identities(root, spec, todo), strict=True):
        if identity is None:  # no selected step in it
            continue
        value, status = store.get(identity)
        usage.blocks[status] = usage.blocks.get(status, 0) + 1
        if value is not None:
            kept.append(value)
        else:
            left.append(block)
            fns.append(partial(storing_block_partial, store, identity))
    return kept, left, fns


def _metered(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    started = time.thread_time()
    out = fn(*args)
    return out, time.thread_time() - started


def _map_blocks(
    fns: list[Callable[[str, KernelSpec, Block], Any]],
    root: str,
    spec: KernelSpec,
    todo: list[Block],
    client: Any,
    usage: Usage,
    key: str,
    workers: list[str] | None = None,
) -> Iterator[Any]:
    """Submit every block at once (``fns[i]`` computes ``todo[i]``) and return an
    iterator of their results as they finish, each block's CPU-seconds and task counted
    in ``usage`` (without a client, each is computed here as it is asked for).
    """
    if not todo:
        return iter(())
    if client is None:
        done: Iterator[tuple[Any, float]] = (
            _metered(fn, root, spec, b) for fn, b in zip(fns, todo, strict=True)
        )
    else:
        from distributed import as_completed

        n = len(todo)
        # A request of few blocks goes ahead of one of many on a shared cluster (Dask
        # runs higher priorities first): a one-month question does not queue behind a
        # decade's blocks already waiting.
        futures = client.map(
            _metered,
            fns,
            [root] * n,
            [spec] * n,
            todo,
            key=key,
            pure=False,
            priority=-n,
            workers=workers,
        )
        done = (f.result() for f in as_completed(futures, loop=client.loop))
    return _counted(done, usage)


def _counted(done: Iterator[tuple[Any, float]], usage: Usage) -> Iterator[Any]:
    for out, cpu_s in done:
        usage.cpu_s += cpu_s
        usage.tasks += 1
        yield out


def _fold(merged: xr.Dataset | None, batch: list[xr.Dataset]) -> xr.Dataset | None:
    """``merged`` with ``batch`` added (None while there is nothing)."""
    parts = ([merged] if merged is not None else []) + batch
    return combine(parts) if parts else None


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
    todo = blocks(spec, block_bytes)
    fn = block_subset if subset else block_partial
    fns: list[Callable[..., Any]] = [fn] * len(todo)
    kept: list[xr.Dataset] = []
    if store is not None and not subset:
        kept, todo, fns = _reused(store, root, spec, todo, usage)
    elif not subset:
        usage.blocks["computed"] = len(todo)
    # keys named after the block function (block_partial-…), as the dashboard and the
    # fault-injection tests know them, not after the meter or the store around it
    results = _map_blocks(fns, root, spec, todo, client, usage, fn.__name__, workers)
    # the kept partials are merged while the blocks compute; then partials are merged
    # in batches as they come: one call adds a batch into the merged arrays (far
    # cheaper than a merge per block); a batch never outweighs the merged
    merged: xr.Dataset | None = _fold(None, kept)
    pending: list[xr.Dataset] = []
    pieces: list[xr.Dataset] = []
    total, done, count = 0, len(kept), len(kept) + len(todo)
    if progress and kept:
        progress(done, count, total)
    for part, nbytes in results:
        total += nbytes
        done += 1
        if progress:
            progress(done, count, total)
        if part is None:
            continue
        if subset:
            pieces.append(part)
            continue
        pending.append(part)
        waiting = sum(p.nbytes for p in pending)
        if len(pending) >= MERGE_BATCH or waiting >= (merged.nbytes if merged else 0):
            merged, pending = _fold(merged, pending), []
    if subset and pieces:
        return finish(merge_blocks(pieces)), total
    merged = _fold(merged, pending)
    if merged is None:
        raise EmptySelection("no time step of the region's assets falls in the range")
    return merged, total


__all__ = ["PartialCache", "Usage", "compute_partial", "storing_block_partial"]
