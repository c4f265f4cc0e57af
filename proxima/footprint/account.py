"""A run's footprint per region, measured or estimated, against pulling the same data.

Compute energy follows the Cloud Carbon Footprint method with the run's own utilisation:
``vCPU-hours x (idle W + u x (max W - idle W)) x PUE``, where the vCPU-hours are the
worker threads the region's tasks held for the region's wall time and ``u`` the share
of it they spent on CPU (CPU-seconds measured on the workers). Transfer energy is the
GB between regions times the network coefficient, times PUE; carbon is energy times the
source region's grid intensity. The pull alternative moves every selected asset's
on-disk bytes to the client region (only those from other regions cross, and cost).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field

from proxima.analysis.assemble import RegionOutcome
from proxima.analysis.plan import Plan, price_per_gb
from proxima.footprint.factors import RegionFactors, for_region

GB = 1e9
# Before a region has run anything: the kernel's measured cost (docs/benchmarks.md:
# ~275 MB decoded per CPU-second) and a busy worker.
DEFAULT_CPU_S_PER_BYTE = 1 / 275e6
DEFAULT_UTILISATION = 0.8


class Side(BaseModel):
    """What moving or computing cost: bytes, dollars, kilowatt-hours, grams CO2e."""

    bytes: int = 0
    usd: float = 0.0
    kwh: float = 0.0
    gco2e: float = 0.0

    def __add__(self, other: Side) -> Side:
        return Side(
            bytes=self.bytes + other.bytes,
            usd=self.usd + other.usd,
            kwh=self.kwh + other.kwh,
            gco2e=self.gco2e + other.gco2e,
        )


class RegionFootprint(BaseModel):
    """One region's share: its compute, what crossed from it, and the pull instead."""

    region: str
    cpu_s: float = Field(description="CPU-seconds of the region's block tasks (measured).")
    core_hours: float
    utilisation: float = Field(description="CPU-seconds / (threads held x wall seconds).")
    compute: Side
    transfer: Side = Field(description="Bytes this run sent from the region to the client.")
    pull: Side = Field(description="The selection's on-disk bytes moved to the client.")


class Footprint(BaseModel):
    """A run's footprint (or a dry run's estimate of it)."""

    estimate: bool
    client_region: str
    regions: list[RegionFootprint]
    factors: dict[str, dict[str, dict[str, Any]]] = Field(
        description="Each region's factors with value, source and year."
    )

    @property
    def run(self) -> Side:
        """This run in all: compute plus transfer."""
        out = Side()
        for r in self.regions:
            out = out + r.compute + r.transfer
        return out

    @property
    def pull(self) -> Side:
        """Pulling the data instead (transfer only)."""
        out = Side()
        for r in self.regions:
            out = out + r.pull
        return out

    def totals(self) -> dict[str, Any]:
        """The run, the pull and what the run avoided, for summaries and the CLI."""
        run, pull = self.run, self.pull
        transfer = Side()
        for r in self.regions:
            transfer = transfer + r.transfer
        return {
            "run": run.model_dump(),
            "pull": pull.model_dump(),
            "avoided_transfer": {
                "bytes": pull.bytes - transfer.bytes,
                "usd": pull.usd - transfer.usd,
                "kwh": pull.kwh - transfer.kwh,
                "gco2e": pull.gco2e - transfer.gco2e,
            },
        }

    def summary(self) -> dict[str, Any]:
        """Everything, as plain data (the run's summary and ``ds.attrs['footprint']``)."""
        return self.model_dump() | {"totals": self.totals()}


def _region(
    f: RegionFactors,
    cpu_s: float,
    utilisation: float,
    crossing: int,
    pull_bytes: int,
    pull_crossing: int,
    price: float,
) -> RegionFootprint:
    u = min(max(utilisation, 1e-6), 1.0)
    held_hours = cpu_s / u / 3600
    watts = f.vcpu_watts_idle.value + u * (f.vcpu_watts_max.value - f.vcpu_watts_idle.value)
    grid, pue, net = f.grid_gco2e_per_kwh.value, f.pue.value, f.network_kwh_per_gb.value
    compute_kwh = held_hours * watts / 1000 * pue
    move_kwh, pull_kwh = crossing / GB * net * pue, pull_crossing / GB * net * pue
    return RegionFootprint(
        region=f.region,
        cpu_s=cpu_s,
        core_hours=cpu_s / 3600,
        utilisation=u,
        compute=Side(
            usd=cpu_s / 3600 * f.vcpu_hour_usd.value,
            kwh=compute_kwh,
            gco2e=compute_kwh * grid,
        ),
        transfer=Side(
            bytes=crossing, usd=crossing / GB * price, kwh=move_kwh, gco2e=move_kwh * grid
        ),
        pull=Side(
            bytes=pull_bytes, usd=pull_crossing / GB * price, kwh=pull_kwh, gco2e=pull_kwh * grid
        ),
    )


def _pull_bytes(plan: Plan) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in plan.selections:
        for r in s.regions:
            out[r.region] = out.get(r.region, 0) + sum(a.size for a in r.spec.assets)
    return out


def _footprint(
    plan: Plan,
    per_region: Mapping[str, tuple[float, float, int]],
    egress_prices: dict[str, float],
    overrides: dict[str, dict[str, float]],
    estimate: bool,
) -> Footprint:
    pulls = _pull_bytes(plan)
    client = plan.client_region
    rows, factors = [], {}
    for region in sorted(pulls):
        f = for_region(region, overrides)
        cpu_s, utilisation, crossing = per_region.get(region, (0.0, 1.0, 0))
        crosses = region != client
        rows.append(
            _region(
                f,
                cpu_s,
                utilisation,
                crossing if crosses else 0,
                pulls[region],
                pulls[region] if crosses else 0,
                price_per_gb(egress_prices, region, client),
            )
        )
        factors[region] = {
            name: getattr(f, name).model_dump()
            for name in RegionFactors.model_fields
            if name != "region"
        }
    return Footprint(estimate=estimate, client_region=client, regions=rows, factors=factors)


def measured(
    plan: Plan,
    outcomes: Iterable[RegionOutcome],
    egress_prices: dict[str, float],
    overrides: dict[str, dict[str, float]] | None = None,
) -> Footprint:
    """The footprint of a finished run from what its regions measured."""
    per: dict[str, list[float]] = {}
    for o in outcomes:
        cpu, held, crossing = per.setdefault(o.region, [0.0, 0.0, 0.0])
        per[o.region] = [cpu + o.cpu_s, held + o.seconds * o.cores, crossing + o.bytes_returned]
    regions = {
        r: (cpu, cpu / held if held > 0 else 1.0, int(crossing))
        for r, (cpu, held, crossing) in per.items()
    }
    return _footprint(plan, regions, egress_prices, overrides or {}, estimate=False)


def calibration_key(region: str, reduction: str) -> str:
    """Where a region's measured cost per byte is kept (a subset costs differently)."""
    return f"{region}|{'subset' if reduction == 'none' else 'reduce'}"


def estimated(
    plan: Plan,
    reduction: str,
    egress_prices: dict[str, float],
    overrides: dict[str, dict[str, float]] | None = None,
    calibration: Mapping[str, Mapping[str, float]] | None = None,
) -> Footprint:
    """A dry run's estimate: bytes from the plan, CPU-seconds from the region's last
    measured cost per byte read (``calibration``), or the kernel's benchmark figure.
    """
    calibration = calibration or {}
    per: dict[str, tuple[float, float, int]] = {}
    for s in plan.selections:
        for r in s.regions:
            known = calibration.get(calibration_key(r.region, reduction), {})
            rate = known.get("cpu_s_per_byte", DEFAULT_CPU_S_PER_BYTE)
            cpu, _, crossing = per.get(r.region, (0.0, 0.0, 0))
            per[r.region] = (
                cpu + r.bytes_read * rate,
                known.get("utilisation", DEFAULT_UTILISATION),
                crossing + r.bytes_out,
            )
    return _footprint(plan, per, egress_prices, overrides or {}, estimate=True)


def calibrate(
    calibration: dict[str, dict[str, float]],
    reduction: str,
    footprint: Footprint,
    bytes_read: Mapping[str, int],
) -> dict[str, dict[str, float]]:
    """``calibration`` updated with a finished run's cost per byte read, per region."""
    out = dict(calibration)
    for r in footprint.regions:
        nbytes = bytes_read.get(r.region, 0)
        if nbytes > 0 and r.cpu_s > 0:
            out[calibration_key(r.region, reduction)] = {
                "cpu_s_per_byte": r.cpu_s / nbytes,
                "utilisation": r.utilisation,
            }
    return out
