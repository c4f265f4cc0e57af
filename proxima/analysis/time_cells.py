"""The stretches of time each value of a result was reduced over (CF 1.8 §7.1, §7.4).

A value grouped by month, season or year is reduced over every time step of its group
inside the requested period. When a group occurs once (one January, one year) the value
describes one interval: a ``time`` with ``bounds``. When it occurs in several years it is
a climatological statistic: a ``time`` with ``climatology`` bounds spanning the first to
the last occurrence, reduced ``within years`` and then ``over years``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import cftime
import numpy as np

SEASON_MONTHS = {"DJF": (12, 1, 2), "MAM": (3, 4, 5), "JJA": (6, 7, 8), "SON": (9, 10, 11)}


@dataclass(frozen=True)
class Interval:
    """A half-open stretch of days, ``[start, end)``."""

    start: date
    end: date

    @property
    def middle(self) -> np.datetime64:
        """Its middle instant, to the second."""
        a = np.datetime64(self.start, "s")
        return a + (np.datetime64(self.end, "s") - a) // 2


@dataclass(frozen=True)
class GroupTime:
    """Where one group's value sits in time: the intervals it was reduced over."""

    occurrences: tuple[Interval, ...]

    @property
    def bounds(self) -> tuple[date, date]:
        """From the first occurrence's start to the last one's end."""
        return self.occurrences[0].start, self.occurrences[-1].end


def _month_start(year: int, month: int) -> date:
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    return date(year, month, 1)


def _occurrences(group_by: str, label: Any, first_year: int, last_year: int) -> list[Interval]:
    """Every calendar interval of ``label`` from ``first_year`` to ``last_year``."""
    if group_by == "year":
        return [Interval(date(int(label), 1, 1), date(int(label) + 1, 1, 1))]
    if group_by == "month":
        m = int(label)
        return [
            Interval(_month_start(y, m), _month_start(y, m + 1))
            for y in range(first_year, last_year + 1)
        ]
    first = SEASON_MONTHS[str(label)][0]
    # DJF of year y begins in December of y - 1: one more year on either side catches it
    return [
        Interval(_month_start(y, first), _month_start(y, first + 3))
        for y in range(first_year - 1, last_year + 1)
    ]


def group_time(group_by: str, label: Any, start: date, end: date) -> GroupTime:
    """The intervals a group's value covers within the days ``start``..``end`` inclusive.

    Raises:
        ValueError: the group does not occur in that period (the value has no data).
    """
    stop = end + timedelta(days=1)
    clipped = [
        Interval(max(i.start, start), min(i.end, stop))
        for i in _occurrences(group_by, label, start.year, end.year)
        if i.start < stop and i.end > start
    ]
    if not clipped:
        raise ValueError(f"{group_by} {label} does not occur in {start}..{end}")
    return GroupTime(tuple(clipped))


def labels(group_by: str, start: date, end: date) -> list[Any]:
    """The groups (months 1-12, seasons, years) that the days ``start``..``end`` touch."""
    months = {
        (y, m)
        for y in range(start.year, end.year + 1)
        for m in range(1, 13)
        if _month_start(y, m) <= end and _month_start(y, m + 1) > start
    }
    if group_by == "year":
        return sorted({y for y, _ in months})
    if group_by == "month":
        return sorted({m for _, m in months})
    return [s for s, ms in SEASON_MONTHS.items() if any(m in ms for _, m in months)]


def is_climatology(times: list[GroupTime]) -> bool:
    """Whether some group spans several years: the values are then climatological."""
    return any(len(t.occurrences) > 1 for t in times)


def step_end(t: Any, per: str) -> Any:
    """The end of the day or month that begins at ``t`` (a numpy datetime64 or cftime)."""
    if isinstance(t, cftime.datetime):
        if per == "day":
            return t + timedelta(days=1)
        year, month = t.year + t.month // 12, t.month % 12 + 1
        return cftime.datetime(year, month, 1, calendar=t.calendar)
    day = np.datetime64(t, "D")
    if per == "day":
        return (day + np.timedelta64(1, "D")).astype("datetime64[ns]")
    first: Any = day.astype("datetime64[M]")
    return (first + np.timedelta64(1, "M")).astype("datetime64[ns]")
