"""`AnalysisRequest`: what a scientist asks for. It is also the Prefect UI form."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from proxima.catalog.geo import normalize_bbox
from proxima.catalog.model import FACET_KEYS, check_facets

Reduction = Literal["mean", "min", "max", "sum", "std", "count", "none"]
Over = Literal["time", "space", "both"]
GroupBy = Literal["month", "season", "year"]
Conversion = Literal["K->degC", "kg m-2 s-1->mm/day", "m->mm"]
# The bound every bbox value shares, published in the JSON schema so that the Prefect API
# refuses a run with longitude 540 or 1e400 at once; normalize_bbox checks each position
# (with a message that names it) for every other entry point.
Degrees = Annotated[float, WithJsonSchema({"type": "number", "minimum": -180, "maximum": 360})]

# source units -> (target units, scale, offset); value_out = value_in * scale + offset
CONVERSIONS: dict[str, tuple[str, str, float, float]] = {
    "K->degC": ("K", "degC", 1.0, -273.15),
    "kg m-2 s-1->mm/day": ("kg m-2 s-1", "mm/day", 86400.0, 0.0),
    "m->mm": ("m", "mm", 1000.0, 0.0),
}


class Selection(BaseModel):
    """Which data: a variable (name or CF standard_name), a time range, a box, facets."""

    model_config = ConfigDict(extra="forbid")

    variable: str = Field(
        description="Variable name (e.g. tas) or CF standard_name (e.g. air_temperature).",
        min_length=1,
        max_length=128,
        examples=["air_temperature"],
    )
    dataset: str | None = Field(
        default=None, description="Dataset (collection), e.g. era5 or cmip6.", max_length=64
    )
    start: date = Field(description="First day, inclusive.", examples=["2020-01-01"])
    end: date = Field(description="Last day, inclusive.", examples=["2020-06-30"])
    bbox: list[Degrees] = Field(
        default=[-180.0, -90.0, 180.0, 90.0],
        description=(
            "[west, south, east, north] in degrees; longitudes -180..180 or 0..360; "
            "west > east crosses the antimeridian. Cells whose centres fall inside are used."
        ),
        min_length=4,
        max_length=4,
    )
    facets: dict[str, str] = Field(
        default_factory=dict,
        description=f"CMIP6 facets to pin, any of: {', '.join(FACET_KEYS)}.",
    )

    @field_validator("bbox")
    @classmethod
    def _bbox(cls, value: list[float]) -> list[float]:
        return normalize_bbox(value)

    @field_validator("facets")
    @classmethod
    def _facets(cls, value: dict[str, str]) -> dict[str, str]:
        return check_facets(value)

    @model_validator(mode="after")
    def _dates(self) -> Selection:
        if self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self


class Coarsen(BaseModel):
    """How a subset (``reduction: none``) is made smaller in its region before it moves."""

    model_config = ConfigDict(extra="forbid")

    time: Literal["day", "month"] | None = Field(
        default=None, description="Mean over each day or month (e.g. daily means of hourly data)."
    )
    space: int | None = Field(
        default=None,
        ge=2,
        le=64,
        description="Mean over blocks of N x N grid cells (cells beyond the last whole block "
        "are dropped).",
    )


class AnalysisRequest(BaseModel):
    """A cross-region analysis.

    Example:
        ```json
        {"selection": {"variable": "air_temperature", "dataset": "era5",
                       "start": "2020-01-01", "end": "2020-06-30",
                       "bbox": [170, -30, -170, 30]},
         "reduction": "mean", "over": "time", "group_by": "month",
         "convert": "K->degC"}
        ```
    """

    model_config = ConfigDict(extra="forbid")

    selection: Selection = Field(description="The data to analyse (B in a comparison).")
    baseline: Selection | None = Field(
        default=None,
        description="Optional selection A: the result is selection minus baseline, "
        "on the coarser of the two grids.",
    )
    reduction: Reduction = Field(
        default="mean",
        description="How values are reduced; none: the selected data themselves (a subset).",
    )
    coarsen: Coarsen | None = Field(
        default=None, description="With reduction none: coarsen in time and/or space first."
    )
    over: Over = Field(
        default="time",
        description="time → a map; space → a time series (area-weighted); both → a number.",
    )
    group_by: GroupBy | None = Field(default=None, description="Group time by month/season/year.")
    convert: Conversion | None = Field(default=None, description="Unit conversion of the result.")
    output_name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$",
        description="File name in the results store (no directories); default from the run.",
    )
    output_format: Literal["netcdf", "zarr"] = Field(default="netcdf")
    overwrite: bool = Field(
        default=False, description="Replace an existing result of the same output_name."
    )
    dry_run: bool = Field(default=False, description="Plan and estimate only; run nothing.")
    reuse: bool = Field(
        default=True,
        description="Serve a stored result of the same request on unchanged assets, and "
        "reuse stored per-block partials; false computes everything afresh.",
    )
    max_transfer_bytes: int = Field(
        default=64 * 2**20, gt=0, description="Refuse plans moving more bytes across regions."
    )
    max_read_bytes: int = Field(
        default=200 * 2**30, gt=0, description="Refuse plans reading more bytes (catalog estimate)."
    )
    allow_partial: bool = Field(
        default=False,
        description="Return the other regions' result if a region fails (coverage noted).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> AnalysisRequest:
        if self.reduction == "none":
            if self.group_by or self.baseline is not None:
                raise ValueError("a subset (reduction none) takes neither group_by nor baseline")
            if "output_format" not in self.model_fields_set:
                self.output_format = "zarr"  # a subset is read in pieces: chunked, by default
        elif self.coarsen is not None:
            raise ValueError("coarsen applies to subsets only (reduction none)")
        if self.baseline is not None and self.over == "space" and self.group_by is None:
            raise ValueError(
                "a comparison needs time reduced: use over='time' or 'both', or set group_by"
            )
        if self.baseline is not None and self.group_by is not None:
            from proxima.analysis.time_cells import labels  # cftime: not for every request

            ours = labels(self.group_by, self.selection.start, self.selection.end)
            theirs = labels(self.group_by, self.baseline.start, self.baseline.end)
            if ours != theirs:
                raise ValueError(
                    f"a comparison by {self.group_by} needs the same {self.group_by}s in the "
                    f"selection ({ours}) and the baseline ({theirs}); a difference of the "
                    "others would be dropped"
                )
        if self.output_name and self.output_name.endswith((".nc", ".zarr")):
            wanted = ".nc" if self.output_format == "netcdf" else ".zarr"
            if not self.output_name.endswith(wanted):
                raise ValueError(
                    f"output_name {self.output_name!r} does not end in {wanted!r}, the "
                    f"extension of output_format {self.output_format!r}"
                )
        if self.convert and self.reduction == "count":
            raise ValueError("a unit conversion makes no sense for reduction 'count'")
        return self
