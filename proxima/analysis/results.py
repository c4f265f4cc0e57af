"""Turning combined aggregates into the answer: statistic, units, comparison, files."""

from __future__ import annotations

import base64
import io
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr

from proxima.analysis import cf
from proxima.analysis.partials import finalize
from proxima.analysis.request import CONVERSIONS, AnalysisRequest
from proxima.errors import ProximaError
from proxima.pids import alive


def convert(da: xr.DataArray, request: AnalysisRequest, units: str | None) -> xr.DataArray:
    """Apply the requested unit conversion (std and count are not shifted)."""
    if not request.convert:
        return da.assign_attrs(units=units or "")
    _, target, scale, offset = CONVERSIONS[request.convert]
    shift = 0.0 if request.reduction in ("std",) else offset
    if request.reduction == "sum":
        shift = 0.0  # a sum of Kelvins is not a sum of Celsius plus a constant
    return (da * scale + shift).assign_attrs(units=target)


def statistic(agg: xr.Dataset, request: AnalysisRequest, units: str | None) -> xr.DataArray:
    """The requested statistic in the requested units."""
    return convert(finalize(agg, request.reduction), request, units)


def coarser_grid_difference(b: xr.DataArray, a: xr.DataArray) -> xr.DataArray:
    """``b - a``, interpolating the finer field onto the coarser grid first."""
    if "lat" in b.dims and "lon" in b.dims:
        if b.sizes["lat"] * b.sizes["lon"] >= a.sizes["lat"] * a.sizes["lon"]:
            b = _interp(b, a)
        else:
            a = _interp(a, b)
    for dim in ("month", "season", "year"):
        if dim in b.dims and set(b[dim].values.tolist()) != set(a[dim].values.tolist()):
            raise ProximaError(
                f"the selection's {dim}s {b[dim].values.tolist()} and the baseline's "
                f"{a[dim].values.tolist()} differ: no difference is returned for some of them"
            )
    b, a = xr.align(b, a, join="inner")
    return b - a


def _interp(field: xr.DataArray, onto: xr.DataArray) -> xr.DataArray:
    src = field.sortby("lat").sortby("lon")
    out = src.interp(lat=onto["lat"], lon=onto["lon"], method="linear", kwargs={"fill_value": None})
    return out


def _sweep_partials(directory: Path, name: str) -> None:
    """Remove partial writes of ``name`` left by processes that died (a crashed run);
    a live writer's partial file is left alone.
    """
    for stale in directory.glob(f".partial-*-{name}"):
        pid = stale.name.split("-")[1]
        if pid.isdigit() and alive(int(pid)):
            continue
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(True)


class OutputExists(ProximaError):
    """A result of that name exists and the request does not allow replacing it."""


def output_path(directory: Path, name: str, fmt: str) -> Path:
    """Where the result ``name`` in format ``fmt`` is written."""
    suffix = ".nc" if fmt == "netcdf" else ".zarr"
    return directory / (name if name.endswith(suffix) else f"{name}{suffix}")


def check_output(directory: Path, name: str, fmt: str, overwrite: bool) -> Path:
    """Find output problems before any computation: an existing result (unless
    ``overwrite``), a directory that cannot be written.

    Raises:
        OutputExists: ``name`` exists and ``overwrite`` is false.
        ProximaError: the results directory cannot be written.
    """
    final = output_path(directory, name, fmt)
    if final.exists() and not overwrite:
        raise OutputExists(
            f"a result {final.name} already exists in {directory}; choose another "
            "output_name or set overwrite: true"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".probe-{os.getpid()}-{uuid.uuid4().hex}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ProximaError(f"the results directory {directory} cannot be written: {exc}") from exc
    return final


def write_atomic(
    result: xr.Dataset, directory: Path, name: str, fmt: str, overwrite: bool = False
) -> Path:
    """Write ``result`` so that only a complete file ever has the final name, and never
    over another result unless ``overwrite`` (two writers of one name: one succeeds).

    Raises:
        OutputExists: ``name`` exists (written meanwhile by another run).
    """
    directory.mkdir(parents=True, exist_ok=True)
    final = output_path(directory, name, fmt)
    _sweep_partials(directory, final.name)
    tmp = directory / f".partial-{os.getpid()}-{uuid.uuid4().hex}-{final.name}"
    try:
        # The result is in memory; never let a process-wide distributed default (left
        # by some other Client) decide how to write it.
        with dask.config.set(scheduler="synchronous"):
            if fmt == "netcdf":
                result.to_netcdf(tmp, engine="h5netcdf", encoding=cf.encoding(result))
            else:
                result.to_zarr(
                    tmp, mode="w", zarr_format=2, consolidated=True, encoding=_zarr_encoding(result)
                )
        _publish(tmp, final, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    return final


READ_CHUNK_BYTES = 8 * 2**20


def _zarr_encoding(result: xr.Dataset) -> dict[str, dict[str, Any]]:
    """CF encoding plus chunks for reading: whole maps, about 8 MiB of time steps each
    (a subset's time series at a point then reads few chunks, a map one).
    """
    encoding = cf.encoding(result)
    for name, var in result.data_vars.items():
        if var.dims[:1] == ("time",) and var.ndim == 3:
            per_step = var.shape[1] * var.shape[2] * var.dtype.itemsize
            steps = max(1, min(var.shape[0], READ_CHUNK_BYTES // max(per_step, 1)))
            encoding.setdefault(str(name), {})["chunks"] = (steps, *var.shape[1:])
    return encoding


def _publish(tmp: Path, final: Path, overwrite: bool) -> None:
    """Give the complete ``tmp`` its final name: a hard link (a file) or a rename (a
    store) fails if the name exists, so of two writers only one succeeds.
    """
    if overwrite:
        if final.is_dir() and tmp.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
        return
    try:
        if tmp.is_dir():
            os.rename(tmp, final)  # refuses a non-empty directory or a file
        else:
            os.link(tmp, final)
    except (FileExistsError, IsADirectoryError, NotADirectoryError, OSError) as exc:
        if final.exists():
            raise OutputExists(
                f"a result {final.name} was written by another run meanwhile; this one "
                "was not stored (set overwrite: true to replace it)"
            ) from exc
        raise


def upload(path: Path, bucket: str, prefix: str, endpoint: str | None = None) -> str:
    """Copy a written result to S3 (each object PUT is atomic); return its URI.

    A Zarr store is uploaded file by file with its consolidated metadata last, so a
    reader never sees metadata that points at missing chunks.
    """
    from proxima import s3

    client = s3.session(endpoint).client("s3", endpoint_url=endpoint)
    key = f"{prefix.rstrip('/')}/{path.name}".lstrip("/")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name == ".zmetadata")
        for file in files:
            client.upload_file(str(file), bucket, f"{key}/{file.relative_to(path).as_posix()}")
    else:
        client.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


def warm_up() -> None:
    """Draw one small map: matplotlib's imports, font cache and renderer, loaded once
    (in a process that forks per run, such as the flow launcher).
    """
    grid = np.arange(2.0)
    plot_png(xr.DataArray(np.ones((2, 2)), coords={"lat": grid, "lon": grid}), "warm-up")


def plot_png(da: xr.DataArray, title: str) -> bytes:
    """A PNG of the result: a map, a series or a bar per group."""
    # A bare Figure, not pyplot: no global figure manager, nothing to close, safe in a
    # thread; fixed margins (tight_layout drew the figure twice).
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7, 3.6), dpi=90)
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.14, top=0.9)
    data = da
    extra = [d for d in data.dims if d not in ("lat", "lon")]
    if "lat" in data.dims and "lon" in data.dims:
        if extra:
            data = data.isel({d: 0 for d in extra})
        data = data.sortby("lat")
        lon, lat = np.asarray(data["lon"], dtype=float), np.asarray(data["lat"], dtype=float)
        # imshow: a regular grid drawn as one image (pcolormesh took 0.25 s at 1°)
        image = ax.imshow(
            np.asarray(data.values, dtype=float),
            origin="lower",
            aspect="auto",
            extent=(lon.min(), lon.max(), lat.min(), lat.max()),
            interpolation="nearest",
        )
        bar = fig.colorbar(image, ax=ax, label=str(data.attrs.get("units", "")))
        # Every tick is a line and a text to lay out: a handful per axis is legible and
        # half the drawing time of matplotlib's default (up to 9).
        for axis in (ax.xaxis, ax.yaxis, bar.ax.yaxis):
            axis.set_major_locator(MaxNLocator(5))
        ax.set_xlabel("longitude")
        ax.set_ylabel("latitude")
    elif data.ndim == 1:
        dim = str(data.dims[0])
        xs = [label(dim, v) for v in np.asarray(data[dim].values)]
        ax.plot(range(len(xs)), np.asarray(data.values), marker="." if len(xs) < 50 else None)
        step = max(len(xs) // 8, 1)
        ax.set_xticks(range(0, len(xs), step), xs[::step], rotation=30, fontsize=7)
        ax.set_ylabel(str(data.attrs.get("units", "")))
    else:
        ax.text(
            0.5,
            0.5,
            f"{float(data.values):.4g} {data.attrs.get('units', '')}",
            ha="center",
            va="center",
            fontsize=20,
        )
        ax.axis("off")
    ax.set_title(title, fontsize=9, y=1.0)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def png_markdown(png: bytes, alt: str) -> str:
    """Markdown that embeds a PNG inline."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
TABLE_ROWS = 24  # longer answers are summarised (min, mean, max)


def label(dim: str, value: Any) -> str:
    """A group or time label as a reader says it: ``Feb``, ``JJA``, ``2020``, ``2020-02-01``."""
    if dim == "month":
        return MONTHS[int(value) - 1]
    if dim == "time":
        return str(value)[:10] if hasattr(value, "year") else str(np.datetime_as_string(value, "D"))
    return str(value)


def answer_table(da: xr.DataArray) -> list[list[str]]:
    """The answer as rows of (label, value with units): one per group or time step of a
    short series, one for a number, else the range of the values.
    """
    units = str(da.attrs.get("units", ""))
    values = np.asarray(da.values, dtype=float)

    def fmt(v: float) -> str:
        return f"{v:.6g} {units}".strip()

    if values.size == 1:
        return [[str(da.name or "value"), fmt(float(values.reshape(-1)[0]))]]
    if da.ndim == 1 and da.size <= TABLE_ROWS:
        dim = str(da.dims[0])
        return [[label(dim, k), fmt(float(v))] for k, v in zip(da[dim].values, values, strict=True)]
    finite = values[np.isfinite(values)]
    shape = " x ".join(f"{d} {n}" for d, n in da.sizes.items())
    if not finite.size:
        return [["shape", shape], ["values", "all missing"]]
    return [
        ["shape", shape],
        ["min", fmt(float(finite.min()))],
        ["mean", fmt(float(finite.mean()))],
        ["max", fmt(float(finite.max()))],
    ]


def table_markdown(rows: list[list[str]], head: tuple[str, str] = ("", "value")) -> str:
    """Rows as a markdown table."""
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    return "\n".join(lines + [f"| {a} | {b} |" for a, b in rows])


def scalar_or_summary(da: xr.DataArray) -> dict[str, Any]:
    """A short, printable summary of the answer."""
    values = np.asarray(da.values, dtype=float)
    if values.size == 1:
        return {"value": float(values.reshape(-1)[0]), "units": da.attrs.get("units")}
    finite = values[np.isfinite(values)]
    return {
        "shape": dict(da.sizes),
        "min": float(finite.min()) if finite.size else None,
        "mean": float(finite.mean()) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
        "units": da.attrs.get("units"),
    }
