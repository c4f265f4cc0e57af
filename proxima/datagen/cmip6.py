"""CMIP6-like Zarr v2 stores (consolidated metadata) in the `cmip6-pds` layout.

``CMIP6/{activity_id}/{institution_id}/{source_id}/{experiment_id}/{member_id}/
{table_id}/{variable_id}/{grid_label}/{version}/``, monthly ``Amon``, each model on
its own calendar (cftime) and grid, latitude ascending, longitude 0 → 360.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cftime
import numpy as np
import xarray as xr

from proxima.datagen.fields import field, grid


@dataclass(frozen=True)
class Model:
    """A synthetic CMIP6 source."""

    institution_id: str
    source_id: str
    calendar: str
    grid_label: str
    member_id: str
    resolution_factor: float
    version: str


MODELS = [
    Model("NOAA-GFDL", "GFDL-ESM4", "noleap", "gr1", "r1i1p1f1", 1.0, "v20190726"),
    Model("MOHC", "UKESM1-0-LL", "360_day", "gn", "r1i1p1f2", 1.5, "v20190406"),
]

# variable_id -> (field kind, standard_name, units, long_name)
VARIABLES = {
    "tas": ("temperature", "air_temperature", "K", "Near-Surface Air Temperature"),
    "pr": ("precipitation_flux", "precipitation_flux", "kg m-2 s-1", "Precipitation"),
}
HISTORICAL_END = 2014
TIME_UNITS = "days since 1850-01-01"


@dataclass(frozen=True)
class Store:
    """One Zarr store to write: a model, experiment, variable and its months."""

    model: Model
    experiment_id: str
    activity_id: str
    variable_id: str
    first: tuple[int, int]
    last: tuple[int, int]

    @property
    def prefix(self) -> str:
        """The store's key prefix (ends with a slash)."""
        m = self.model
        return (
            f"CMIP6/{self.activity_id}/{m.institution_id}/{m.source_id}/{self.experiment_id}/"
            f"{m.member_id}/Amon/{self.variable_id}/{m.grid_label}/{m.version}/"
        )

    def months(self) -> list[tuple[int, int]]:
        """All (year, month) pairs covered."""
        out, (y, mo) = [], self.first
        while (y, mo) <= self.last:
            out.append((y, mo))
            y, mo = (y + 1, 1) if mo == 12 else (y, mo + 1)
        return out


def stores(start: tuple[int, int], end: tuple[int, int], variables: list[str]) -> Iterator[Store]:
    """The stores covering ``start``..``end``: historical up to 2014, ssp585 after."""
    for model in MODELS:
        for variable in variables:
            if start[0] <= HISTORICAL_END:
                last = min(end, (HISTORICAL_END, 12))
                yield Store(model, "historical", "CMIP", variable, start, last)
            if end[0] > HISTORICAL_END:
                first = max(start, (HISTORICAL_END + 1, 1))
                yield Store(model, "ssp585", "ScenarioMIP", variable, first, end)


def _block(store: Store, months: list[tuple[int, int]], resolution: float, seed: int) -> xr.Dataset:
    m = store.model
    kind, standard_name, units, long_name = VARIABLES[store.variable_id]
    lat, lon = grid(resolution * m.resolution_factor, descending_lat=False)
    times = [cftime.datetime(y, mo, 15, 12, calendar=m.calendar) for y, mo in months]
    days_in_year = 360.0 if m.calendar == "360_day" else 365.0
    doy = np.array([t.dayofyr for t in times], dtype=float) * 365.25 / days_in_year
    yrs = np.array([t.year - 2000 + (t.dayofyr - 1) / days_in_year for t in times])
    keys = np.array([y * 12 + mo for y, mo in months])
    values = field(kind, seed, f"{m.source_id}/{store.variable_id}", doy, yrs, keys, lat, lon)
    da = xr.DataArray(
        values,
        dims=("time", "lat", "lon"),
        coords={"time": times, "lat": lat, "lon": lon},
        attrs={"standard_name": standard_name, "units": units, "long_name": long_name},
    )
    da.lat.attrs.update({"standard_name": "latitude", "units": "degrees_north", "axis": "Y"})
    da.lon.attrs.update({"standard_name": "longitude", "units": "degrees_east", "axis": "X"})
    da.time.attrs.update({"standard_name": "time", "axis": "T"})
    return da.to_dataset(name=store.variable_id).assign_attrs(
        activity_id=store.activity_id,
        institution_id=m.institution_id,
        source_id=m.source_id,
        experiment_id=store.experiment_id,
        member_id=m.member_id,
        variant_label=m.member_id,
        table_id="Amon",
        variable_id=store.variable_id,
        grid_label=m.grid_label,
        frequency="mon",
        version=m.version,
        Conventions="CF-1.7 CMIP-6.2",
        title=f"{m.source_id} output prepared for CMIP6 (synthetic)",
        further_info_url=f"https://furtherinfo.es-doc.org/CMIP6.{m.institution_id}.{m.source_id}",
    )


def write_store(
    path: Path,
    store: Store,
    resolution: float,
    seed: int,
    block_months: int = 120,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """Write ``store`` as Zarr v2 with consolidated metadata, ``block_months`` at a time."""
    months = store.months()
    for i in range(0, len(months), block_months):
        ds = _block(store, months[i : i + block_months], resolution, seed)
        if i == 0:
            encoding = {
                store.variable_id: {
                    "chunks": (min(len(months), 120), *ds[store.variable_id].shape[1:])
                },
                "time": {"units": TIME_UNITS, "calendar": store.model.calendar, "dtype": "f8"},
            }
            ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True, encoding=encoding)
        else:
            ds.to_zarr(path, append_dim="time", zarr_format=2, consolidated=True)
        if on_progress:
            on_progress(int(ds[store.variable_id].nbytes))
