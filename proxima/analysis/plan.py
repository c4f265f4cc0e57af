"""Planning: resolve selections through the catalog, group assets by region,
estimate bytes read, bytes that cross regions and what that egress costs.

Everything here runs before any cluster is touched; every refusal says what was
wrong and what is allowed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from opensearchpy import OpenSearch
from pydantic import BaseModel, Field

from proxima.analysis.coverage import Coverage, coverage, deduplicate, place
from proxima.analysis.kernels import AssetRef, KernelSpec
from proxima.analysis.partials import SEASONS, fields
from proxima.analysis.request import CONVERSIONS, AnalysisRequest, Coarsen, Selection
from proxima.analysis.units import harmonize
from proxima.catalog.model import Asset, Variable
from proxima.catalog.search import CatalogQuery, known_variables, search
from proxima.config import EGRESS_PRICES_DEFAULT
from proxima.errors import ProximaError

GB = 1e9


class PlanningError(ProximaError):
    """The request cannot be planned (nothing was submitted to any cluster)."""


class RegionPlan(BaseModel):
    """What one region will do for one selection."""

    region: str
    spec: KernelSpec
    bytes_read: int = Field(description="Estimated bytes of data read in the region.")
    bytes_out: int = Field(description="Estimated bytes of partial aggregates returned.")
    crosses_region: bool
    egress_usd: float


class SelectionPlan(BaseModel):
    """A resolved selection."""

    role: str
    dataset: str
    variable: str
    standard_name: str | None = None
    long_name: str | None = None
    units: str | None
    grid: list[int]
    calendar: str | None
    regions: list[RegionPlan]
    coverage: Coverage = Field(description="The requested days against those the data hold.")
    dropped: list[str] = Field(
        default_factory=list, description="Duplicate or superseded assets not read, and why."
    )


class Plan(BaseModel):
    """The whole plan of a request."""

    client_region: str
    selections: list[SelectionPlan]

    @property
    def bytes_read(self) -> int:
        """Total estimated bytes read."""
        return sum(r.bytes_read for s in self.selections for r in s.regions)

    @property
    def bytes_crossing(self) -> int:
        """Estimated bytes that cross regions."""
        return sum(r.bytes_out for s in self.selections for r in s.regions if r.crosses_region)

    def dry_run_summary(self) -> dict[str, Any]:
        """What a dry run returns: the plan's table and its estimates."""
        return {
            "dry_run": True,
            "plan": self.table(),
            "coverage": {s.role: s.coverage.describe() for s in self.selections},
            "bytes_read_est": self.bytes_read,
            "bytes_crossing_est": self.bytes_crossing,
            "egress_usd_est": self.egress_usd,
        }

    @property
    def egress_usd(self) -> float:
        """Estimated egress cost."""
        return sum(r.egress_usd for s in self.selections for r in s.regions)

    def table(self) -> list[dict[str, Any]]:
        """One row per selection and region (for artifacts and the CLI)."""
        return [
            {
                "selection": s.role,
                "region": r.region,
                "dataset": s.dataset,
                "variable": s.variable,
                "assets": len(r.spec.assets),
                "bytes_read_est": r.bytes_read,
                "bytes_out_est": r.bytes_out,
                "crosses_region": r.crosses_region,
                "egress_usd": round(r.egress_usd, 6),
            }
            for s in self.selections
            for r in s.regions
        ]


def price_per_gb(prices: dict[str, float], source: str, dest: str) -> float:
    """Inter-region transfer price per GB (0 inside a region)."""
    if source == dest:
        return 0.0
    return prices.get(f"{source}->{dest}", prices.get("default", EGRESS_PRICES_DEFAULT["default"]))


def _day_key(value: date) -> int:
    return value.year * 10000 + value.month * 100 + value.day


# Days either side of the assets' catalogued span: a 360_day date is catalogued as the
# month's last real day (Feb 30 -> Feb 28), and an edge step's day may differ by one
# between the catalog's decode and the kernel's.
_SPAN_MARGIN = timedelta(days=3)


def _day_window(items: list[Asset], sel: Selection) -> tuple[int, int]:
    """The selection's days as day keys, narrowed to the region's assets' span.

    The steps selected are the same; the narrowed window makes a region's spec the same
    for every request that selects the same steps of it (``proxima.reuse.regions``).
    """
    start, end = _day_key(sel.start), _day_key(sel.end)
    if any(a.time is None for a in items):
        return start, end
    first = min(a.time.start for a in items if a.time) - _SPAN_MARGIN
    last = max(a.time.end for a in items if a.time) + _SPAN_MARGIN
    return max(start, _day_key(first.date())), min(end, _day_key(last.date()))


def _overlap_fraction(asset: Asset, sel: Selection) -> float:
    if asset.time is None:
        return 1.0
    a0, a1 = asset.time.start.date(), asset.time.end.date()
    span = max((a1 - a0).days + 1, 1)
    overlap = (min(a1, sel.end) - max(a0, sel.start)).days + 1
    return min(max(overlap / span, 0.0), 1.0)


def _space_fraction(asset: Asset, sel: Selection) -> tuple[float, float]:
    w, s, e, n = sel.bbox
    lon_span = (e - w) if w <= e else (360.0 - w + e)
    ab = asset.bbox or [-180.0, -90.0, 180.0, 90.0]
    a_lon = (ab[2] - ab[0]) if ab[0] <= ab[2] else (360.0 - ab[0] + ab[2])
    a_lat = max(ab[3] - ab[1], 1e-9)
    return min(lon_span / max(a_lon, 1e-9), 1.0), min((n - s) / a_lat, 1.0)


def _variable(asset: Asset, name: str) -> Variable:
    return next(v for v in asset.variables if v.name == name)


def _resolve_variable(assets: list[Asset], wanted: str) -> Variable:
    names: dict[str, Variable] = {}
    for asset in assets:
        for var in asset.variables:
            if wanted in (var.name, var.standard_name):
                names[var.name] = var
    if len(names) > 1:
        raise PlanningError(
            f"{wanted!r} is ambiguous: it matches variables {sorted(names)}; name one of them"
        )
    return next(iter(names.values()))


def _check_one_grid(assets: list[Asset], variable: str, sel: Selection) -> list[int]:
    grids = defaultdict(set)
    for asset in assets:
        key = tuple(_variable(asset, variable).shape[1:])
        grids[key].add(
            "/".join(
                asset.facets[k]
                for k in ("source_id", "member_id", "grid_label")
                if k in asset.facets
            )
            or asset.dataset
        )
    sources = sorted({s for group in grids.values() for s in group})
    if len(grids) > 1 or len(sources) > 1:
        raise PlanningError(
            f"the selection of {sel.variable!r} mixes {len(sources)} models/members/grids "
            f"({sources}); their values cannot be combined cell by cell. Pin one with facets, "
            'e.g. {"source_id": "...", "member_id": "..."}'
        )
    return list(next(iter(grids)))


def _keys(assets: list[Asset], sel: Selection, group_by: str | None) -> int:
    """How many groups the assets' time steps inside the selection fall into."""
    labels: set[Any] = set()
    for asset in assets:
        a0, a1 = sel.start, sel.end
        if asset.time is not None:
            a0, a1 = max(asset.time.start.date(), a0), min(asset.time.end.date(), a1)
        y, m = a0.year, a0.month
        while (y, m) <= (a1.year, a1.month):
            labels.add({"month": m, "year": y, "season": SEASONS[m]}[group_by or "month"])
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return len(labels)


def out_bytes(
    reduction: str, over: str, group_by: str | None, keys: int, nlat: int, nlon: int
) -> int:
    """Bytes of a region's pickled partial aggregates: float64 per field and output
    value, one count per key (nothing missing), the coordinates, and the envelope of a
    pickled Dataset (~600 B plus ~150 B per variable, measured).
    """
    cells = nlat * nlon if over == "time" else 1
    names = fields(reduction, over)
    per_key = sum(
        8 if n in ("count", "weight") and len(names) > 1 and cells > 1 else 8 * cells for n in names
    )
    coords = 8 * (nlat + nlon) if over == "time" else 0
    key_coord = 58 if (over == "space" and group_by is None) else 8  # a cftime pickles to ~58 B
    return keys * (per_key + key_coord) + coords + 600 + 150 * len(names)


def resolve_assets(role: str, sel: Selection, client: OpenSearch, alias: str) -> list[Asset]:
    """The catalog's assets for ``sel`` (the only catalog I/O of planning).

    Raises:
        PlanningError: No asset matches; the message says whether the variable is
            unknown or the period, box or facets miss it.
    """
    query = CatalogQuery(
        dataset=sel.dataset,
        variable=sel.variable,
        start=datetime.combine(sel.start, datetime.min.time()),
        end=datetime.combine(sel.end, datetime.max.time()),
        bbox=sel.bbox,
        facets=sel.facets,
    )
    assets = [Asset.model_validate(doc) for doc in search(client, alias, query).assets]
    if assets:
        return assets
    known = known_variables(client, alias)
    if sel.variable not in known:
        raise PlanningError(
            f"unknown variable {sel.variable!r}; the catalog has: {', '.join(known) or 'none'}"
        )
    raise PlanningError(
        f"{role}: no asset of {sel.variable!r}"
        + (f" in dataset {sel.dataset!r}" if sel.dataset else "")
        + f" overlaps {sel.start}..{sel.end}, box {sel.bbox}"
        + (f" and facets {sel.facets}" if sel.facets else "")
    )


def _check_conversion(role: str, request: AnalysisRequest, variable: str, units: str) -> None:
    if not request.convert:
        return
    source_units = CONVERSIONS[request.convert][0]
    if units != source_units:
        allowed = [k for k, v in CONVERSIONS.items() if v[0] == units]
        raise PlanningError(
            f"{role}: conversion {request.convert!r} needs units {source_units!r} but "
            f"{variable} is in {units!r}; allowed for it: {allowed or 'none'}"
        )


def _region_plan(
    region: str,
    items: list[Asset],
    sel: Selection,
    request: AnalysisRequest,
    variable: str,
    grid: list[int],
    conversions: dict[str, tuple[float, float]],
) -> tuple[KernelSpec, int, int]:
    """One region's kernel spec, with its estimated bytes read and bytes returned."""
    read, steps = 0.0, 0
    fx, fy = _space_fraction(items[0], sel)
    refs = []
    for asset in sorted(items, key=lambda a: a.path):
        var = _variable(asset, variable)
        ft = _overlap_fraction(asset, sel)
        read += var.nbytes * ft * fx * fy
        steps += round(var.shape[0] * ft)
        scale, offset = conversions.get(place(asset), (1.0, 0.0))
        refs.append(
            AssetRef(
                path=asset.path,
                format=asset.format,
                size=asset.size,
                steps=var.shape[0],
                nbytes=var.nbytes,
                time_chunk=(var.chunks or [0])[0],
                scale=scale,
                offset=offset,
                mtime_ns=asset.mtime_ns,
                ctime_ns=asset.ctime_ns,
                etag=asset.etag,
            )
        )
    keys = _keys(items, sel, request.group_by) if request.group_by else 1
    if request.over == "space" and not request.group_by:
        keys = steps
    nlat, nlon = max(round(grid[0] * fy), 1), max(round(grid[1] * fx), 1)
    coarsen = request.coarsen or Coarsen()
    start_key, end_key = _day_window(items, sel)
    spec = KernelSpec(
        variable=variable,
        reduction=request.reduction,
        start_key=start_key,
        end_key=end_key,
        bbox=sel.bbox,
        over=request.over,
        group_by=request.group_by,
        assets=refs,
        coarsen_time=coarsen.time,
        coarsen_space=coarsen.space,
    )
    if request.reduction == "none":
        if coarsen.time:
            steps = _periods(items, sel, coarsen.time)
        n = coarsen.space or 1
        ny, nx = _box_cells(items[0], grid, sel.bbox)
        if ny // n == 0 or nx // n == 0:
            raise PlanningError(
                f"coarsen space {n} is larger than the box ({ny} x {nx} cells of {variable})"
            )
        dtype = _variable(items[0], variable).dtype or "float64"
        itemsize = 4 if dtype == "float32" else 8
        return spec, int(read), subset_bytes(steps, ny // n, nx // n, itemsize)
    return (
        spec,
        int(read),
        out_bytes(request.reduction, request.over, request.group_by, keys, nlat, nlon),
    )


def _box_cells(asset: Asset, grid: list[int], bbox: list[float]) -> tuple[int, int]:
    """Grid-cell centres inside ``bbox``, assuming the asset's grid is regular between
    the centres its bbox spans (as the kernel's window selects them).
    """
    w, s, e, n = bbox
    a = asset.bbox or [-180.0, -90.0, 180.0, 90.0]
    lat = np.linspace(a[1], a[3], grid[0])
    lon_span = (a[2] - a[0]) % 360.0 or 360.0
    lon = (a[0] + np.arange(grid[1]) * lon_span / max(grid[1] - 1, 1) + 180.0) % 360.0 - 180.0
    ny = int(((lat >= s) & (lat <= n)).sum())
    inside = (lon >= w) & (lon <= e) if w <= e else (lon >= w) | (lon <= e)
    return ny, int(inside.sum())


def _periods(assets: list[Asset], sel: Selection, per: str) -> int:
    """How many days (or months) of the selection the assets hold."""
    days: set[date] = set()
    for asset in assets:
        a0, a1 = sel.start, sel.end
        if asset.time is not None:
            a0, a1 = max(asset.time.start.date(), a0), min(asset.time.end.date(), a1)
        days |= {a0 + timedelta(d) for d in range((a1 - a0).days + 1)}
    return len(days) if per == "day" else len({(d.year, d.month) for d in days})


def subset_bytes(steps: int, nlat: int, nlon: int, itemsize: int) -> int:
    """Bytes of a region's pickled subset piece: the values, a cftime per step (~58 B
    pickled), the grid coordinates and the Dataset's envelope (~800 B).
    """
    return steps * (max(nlat, 0) * max(nlon, 0) * itemsize + 58) + 8 * (nlat + nlon) + 1170


FINER_THAN = {"day": {"1hr", "3hr", "6hr"}, "month": {"1hr", "3hr", "6hr", "day"}}


def _check_coarsening(role: str, request: AnalysisRequest, assets: list[Asset]) -> None:
    """A daily mean of monthly data would be a monthly value labelled as a day."""
    per = request.coarsen.time if request.coarsen else None
    if not per:
        return
    coarse = sorted(
        {a.time.frequency for a in assets if a.time and a.time.frequency} - FINER_THAN[per]
    )
    if coarse:
        raise PlanningError(
            f"{role}: coarsen time {per!r} needs data finer than a {per}; these are {coarse}"
        )


def estimate_selection(
    role: str,
    sel: Selection,
    request: AnalysisRequest,
    assets: list[Asset],
    client_region: str,
    prices: dict[str, float],
) -> SelectionPlan:
    """Resolve one selection's assets into per-region kernel specs with estimates (no
    I/O: everything comes from the catalog documents).
    """
    datasets = sorted({a.dataset for a in assets})
    if len(datasets) > 1:
        raise PlanningError(
            f"{role}: {sel.variable!r} is in several datasets {datasets}; set selection.dataset"
        )
    var = _resolve_variable(assets, sel.variable)
    assets, dropped = deduplicate(role, var.name, assets)
    grid = _check_one_grid(assets, var.name, sel)
    units, conversions = harmonize(
        role, var.name, {place(a): _variable(a, var.name).units for a in assets}
    )
    _check_conversion(role, request, var.name, units)
    _check_coarsening(role, request, assets)
    covered = coverage(assets, sel.start, sel.end)
    if not covered.complete and not request.allow_partial:
        raise PlanningError(
            f"{role}: the data hold {var.name} for {sel.start}..{sel.end} only in part "
            f"({covered.describe()}); narrow the period, or set allow_partial to accept "
            "an answer over what exists"
        )
    by_region: dict[str, list[Asset]] = defaultdict(list)
    for asset in assets:
        by_region[asset.region].append(asset)
    regions = []
    for region, items in sorted(by_region.items()):
        spec, read, out = _region_plan(region, items, sel, request, var.name, grid, conversions)
        regions.append(
            RegionPlan(
                region=region,
                spec=spec,
                bytes_read=read,
                bytes_out=out,
                crosses_region=region != client_region,
                egress_usd=out / GB * price_per_gb(prices, region, client_region),
            )
        )
    calendars = sorted({a.time.calendar for a in assets if a.time and a.time.calendar})
    return SelectionPlan(
        role=role,
        dataset=datasets[0],
        variable=var.name,
        standard_name=var.standard_name,
        long_name=var.long_name,
        units=units,
        grid=grid,
        calendar=calendars[0] if calendars else None,
        regions=regions,
        coverage=covered,
        dropped=dropped,
    )


COARSENINGS = [
    Coarsen(time=t, space=n) for t in (None, "day", "month") for n in (None, 2, 4, 8, 16) if t or n
]


def _coarsening_that_fits(
    request: AnalysisRequest, estimate: Callable[[AnalysisRequest], Plan]
) -> str:
    """The least coarsening of a subset whose crossing bytes fit the cap, said as a hint."""
    fits = []
    for option in COARSENINGS:
        if request.coarsen and option == request.coarsen:
            continue
        try:
            crossing = estimate(request.model_copy(update={"coarsen": option})).bytes_crossing
        except PlanningError:  # blocks larger than the box
            continue
        if crossing <= request.max_transfer_bytes:
            fits.append((crossing, option))
    if not fits:
        return "no coarsening fits: narrow the box or the period, or raise the limit"
    crossing, best = max(fits, key=lambda f: f[0])
    wanted = best.model_dump_json(exclude_none=True)
    return f'"coarsen": {wanted} would move about {crossing:,} bytes'


def make_plan(
    request: AnalysisRequest,
    client: OpenSearch,
    alias: str,
    client_region: str,
    prices: dict[str, float] | None = None,
) -> Plan:
    """Plan ``request``; raise PlanningError on anything that cannot run.

    Raises:
        PlanningError: Unknown variable, empty selection, ambiguous or mixed
            selection, bad conversion, or estimates above the request's guards.
    """
    prices = prices or EGRESS_PRICES_DEFAULT
    sels = [("selection", request.selection)]
    if request.baseline is not None:
        sels.append(("baseline", request.baseline))
    resolved = [(role, s, resolve_assets(role, s, client, alias)) for role, s in sels]

    def estimate(req: AnalysisRequest) -> Plan:
        return Plan(
            client_region=client_region,
            selections=[
                estimate_selection(role, s, req, assets, client_region, prices)
                for role, s, assets in resolved
            ],
        )

    plan = estimate(request)
    if request.baseline is not None:
        units = {str(s.units) for s in plan.selections}
        if len(units) > 1:
            raise PlanningError(f"selection and baseline have different units {sorted(units)}")
    if plan.bytes_read > request.max_read_bytes:
        raise PlanningError(
            f"the request would read about {plan.bytes_read / GB:.2f} GB, above max_read_bytes "
            f"{request.max_read_bytes / GB:.2f} GB; narrow the time range or box, or raise it"
        )
    if plan.bytes_crossing > request.max_transfer_bytes:
        hint = "reduce over more dimensions or raise the limit"
        if request.reduction == "none":
            hint = _coarsening_that_fits(request, estimate)
        raise PlanningError(
            f"about {plan.bytes_crossing:,} bytes would cross regions, above "
            f"max_transfer_bytes {request.max_transfer_bytes:,}; {hint}"
        )
    for sel in plan.selections:  # each crossing region's share of the cap, held at run time
        for r in sel.regions:
            if r.crosses_region:
                others = plan.bytes_crossing - r.bytes_out
                r.spec.max_out_bytes = request.max_transfer_bytes - others
    return plan
