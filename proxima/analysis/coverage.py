"""What a selection's assets hold in time: duplicates counted once, conflicts refused,
and the requested period compared with the days the data cover.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from datetime import date, timedelta

from pydantic import BaseModel

from proxima.catalog.model import Asset
from proxima.errors import ProximaError


class OverlapError(ProximaError):
    """Assets of one variable overlap in time with different content."""


class Coverage(BaseModel):
    """The requested period against the days the data cover (inclusive ranges)."""

    requested: tuple[date, date]
    missing: list[tuple[date, date]]
    by_region: dict[str, list[tuple[date, date]]]

    @property
    def complete(self) -> bool:
        """Whether every requested day is covered."""
        return not self.missing

    def answered_by(self, regions: set[str]) -> Coverage:
        """The coverage when only ``regions`` answered."""
        kept = {r: days for r, days in self.by_region.items() if r in regions}
        return _measured(*self.requested, kept)

    def describe(self) -> str:
        """``complete``, or ``partial: missing …`` with the missing ranges."""
        if self.complete:
            return "complete"
        return "partial: missing " + ", ".join(f"{a}..{b}" for a, b in self.missing)


def place(asset: Asset) -> str:
    """``region:path``: where an asset is, as messages name it."""
    return f"{asset.region}:{asset.path}"


def _series(asset: Asset) -> tuple[str, ...]:
    """What makes two assets parts of one series: dataset and facets but the version."""
    return (asset.dataset, *sorted(f"{k}={v}" for k, v in asset.facets.items() if k != "version"))


def _same_content(a: Asset, b: Asset) -> bool:
    if a.etag and b.etag:
        return a.etag == b.etag
    return (a.size, a.time, a.variables) == (b.size, b.time, b.variables)


def _overlap(a: Asset, b: Asset) -> bool:
    return bool(a.time and b.time and a.time.start <= b.time.end and b.time.start <= a.time.end)


def deduplicate(role: str, variable: str, assets: list[Asset]) -> tuple[list[Asset], list[str]]:
    """Each time step once: of assets of one series that overlap in time, an identical
    copy is dropped and an older CMIP6 version gives way to the newest.

    Returns:
        (the assets to read, the ones dropped with why).

    Raises:
        OverlapError: two overlapping assets differ and neither supersedes the other.
    """
    groups: dict[tuple[str, ...], list[Asset]] = defaultdict(list)
    for asset in assets:
        groups[_series(asset)].append(asset)
    kept: list[Asset] = []
    dropped: list[str] = []
    for group in groups.values():
        # newest version first; among equals the first by place stays (stable sorts)
        group.sort(key=place)
        group.sort(key=lambda a: a.facets.get("version", ""), reverse=True)
        chosen: list[Asset] = []
        for asset in group:
            clash = next((c for c in chosen if _overlap(c, asset)), None)
            if clash is None:
                chosen.append(asset)
            elif _same_content(clash, asset):
                dropped.append(f"{place(asset)} (a copy of {place(clash)})")
            elif asset.facets.get("version", "") < clash.facets.get("version", ""):
                dropped.append(f"{place(asset)} (superseded by {place(clash)})")
            else:
                raise OverlapError(
                    f"{role}: {variable} in {place(asset)} and {place(clash)} overlap in "
                    "time with different content; remove one, or pin one with facets"
                )
        kept.extend(chosen)
    return sorted(kept, key=place), sorted(dropped)


def asset_days(asset: Asset) -> tuple[date, date] | None:
    """The days an asset's time steps stand for: whole months for monthly data."""
    if asset.time is None:
        return None
    first, last = asset.time.start.date(), asset.time.end.date()
    if asset.time.frequency in ("mon", "yr"):
        first = first.replace(day=1)
        last = last.replace(day=calendar.monthrange(last.year, last.month)[1])
        if asset.time.frequency == "yr":
            first, last = first.replace(month=1), last.replace(month=12, day=31)
    return first, last


def _union(ranges: list[tuple[date, date]]) -> list[tuple[date, date]]:
    merged: list[tuple[date, date]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1] + timedelta(days=1):
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _clip(ranges: list[tuple[date, date]], lo: date, hi: date) -> list[tuple[date, date]]:
    return [(max(a, lo), min(b, hi)) for a, b in ranges if b >= lo and a <= hi]


def coverage(assets: list[Asset], start: date, end: date) -> Coverage:
    """Which requested days the assets cover, per region and in total."""
    by_region: dict[str, list[tuple[date, date]]] = defaultdict(list)
    for asset in assets:
        days = asset_days(asset)
        if days:
            by_region[asset.region].append(days)
    return _measured(start, end, {r: _clip(_union(rs), start, end) for r, rs in by_region.items()})


def _measured(start: date, end: date, by_region: dict[str, list[tuple[date, date]]]) -> Coverage:
    covered = _union([r for rs in by_region.values() for r in rs])
    missing, cursor = [], start
    for a, b in covered:
        if a > cursor:
            missing.append((cursor, a - timedelta(days=1)))
        cursor = max(cursor, b + timedelta(days=1))
    if cursor <= end:
        missing.append((cursor, end))
    return Coverage(
        requested=(start, end), missing=missing, by_region=dict(sorted(by_region.items()))
    )
