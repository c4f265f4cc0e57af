"""A region's merged partial, kept in the client region: a later run whose share of that
region is the same does not visit the region at all.

A region's share is its kernel spec: every asset it reads with the catalog's stamp
(size, mtime, ctime, ETag) and unit conversion, the variable, reduction, box, grouping
and the days selected (narrowed to the assets' span by the plan, so a longer request
that selects the same steps of the region has the same share). The kept value is what
the region's task returned, partial included: it already crossed to the client region
when it was computed, so keeping it there moves nothing. Like whole results, it trusts
the catalog's stamps: a rewrite is seen once a refresh has recorded it (the blocks
under a region that is visited are checked against the live files every time).

Entries are the partial store's (framed, checksummed, written by rename, LRU under a
cap), under ``<results>/.reuse/regions/<region>``; a corrupt one is dropped and the region is
visited.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proxima.analysis.kernels import KERNEL_VERSION, KernelSpec
from proxima.reuse.store import DEFAULT_MAX_BYTES, PartialStore, Status

DIRECTORY = ".reuse/regions"  # under the results directory
NOT_THE_SHARE = {"max_out_bytes"}  # the cap is checked against the kept partial's size


def store(results_dir: str | Path, region: str, read: bool = True) -> PartialStore:
    """The client region's store of ``region``'s merged partials."""
    return PartialStore(
        directory=str(Path(results_dir) / DIRECTORY / region),
        max_bytes=DEFAULT_MAX_BYTES,
        read=read,
    )


def _identity(region: str, spec: KernelSpec) -> dict[str, Any]:
    return {
        "region": region,
        "spec": spec.model_dump(mode="json", exclude=NOT_THE_SHARE),
        "kernel": KERNEL_VERSION,
    }


def lookup(
    kept: PartialStore, region: str, spec: KernelSpec
) -> tuple[dict[str, Any] | None, Status]:
    """What the region's task returned for this share before, or None with why: not
    kept, reuse off or a subset (``computed``: the data itself is not kept), or the
    entry did not verify (``corrupt``: it is deleted).
    """
    if spec.reduction == "none":
        return None, "computed"
    value, status = kept.get(_identity(region, spec))
    return value, status


def keep(kept: PartialStore, region: str, spec: KernelSpec, out: dict[str, Any]) -> None:
    """Keep the region's answer to its share (the task's result, partial included);
    a subset is not kept.
    """
    if spec.reduction != "none":
        kept.put(_identity(region, spec), out)
