"""How close the regional kernel runs to the decode limit, side by side in one run.

On one region's ERA5-like files (benchmarks/stack.yaml, us-east-1: 3 months of hourly
1° NetCDF, zlib + shuffle, 24 × 128 × 128 chunks), the same reduction — monthly mean
maps — three ways, interleaved, ``--repeat`` times each:

(i)   the decode limit: every chunk of the variable read with h5py and summed with
      numpy, in as many processes as cores (no Dask, no Prefect);
(ii)  Proxima's regional kernel (``compute_partial``) on the region's Dask cluster;
(iii) what a user would write: ``xarray.open_mfdataset`` + ``groupby("time.month").mean()``
      (flox) computed on the same cluster.

The same three on the same values as one CMIP6-like Zarr v2 store (the public CMIP6
buckets' layout: Blosc lz4 with shuffle, xarray's default and the Pangeo stores', one
day of the whole globe per chunk), built once under the region root: (i) every chunk
read with zarr + numpy in as many processes as cores, (ii) the kernel on the store,
(iii) ``xarray.open_zarr`` + the same groupby; keys ``zarr_limit_mb_s``,
``zarr_kernel_mb_s``, ``zarr_xarray_mb_s``.

Scaling within the region: the kernel on one of the region's worker processes, then on
both, interleaved (the other region idle); ``scaling_2_workers`` = time(1) / time(2).

Prints decoded MB per wall-second and per CPU-second (psutil: the pool's processes for
(i); the region's worker processes and scheduler for (ii) and (iii)), and writes
benchmarks/results/reduction_limit.json with ``limit_mb_s``, ``kernel_mb_s`` and
``xarray_mb_s`` (medians, wall, same run).

Usage: .venv/bin/python benchmarks/reduction_limit.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import common

common.configure()

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import xarray as xr  # noqa: E402
import zarr  # noqa: E402
from distributed import Client  # noqa: E402
from machine import print_machine  # noqa: E402

from proxima.analysis.kernels import AssetRef, KernelSpec  # noqa: E402
from proxima.analysis.partials import finalize  # noqa: E402
from proxima.analysis.regional import compute_partial  # noqa: E402
from proxima.platform import from_stack  # noqa: E402

REGION = "us-east-1"
VARIABLE = "air_temperature_at_2_metres"


def _slab_sums(path: str, start: int, stop: int) -> tuple[int, float]:
    """Decode steps [start, stop) of one file with h5py and sum them: (bytes, CPU-s)."""
    cpu = time.process_time()
    with h5py.File(path, "r") as f:
        var = f[VARIABLE]
        chunk = var.chunks[0]
        buf = np.empty((chunk, *var.shape[1:]), dtype=var.dtype)
        nbytes = 0
        for t in range(start, stop, chunk):
            n = min(chunk, stop - t)
            var.read_direct(buf, np.s_[t : t + n], np.s_[:n])
            buf[:n].sum(axis=0, dtype="f8")
            nbytes += buf[:n].nbytes
    return nbytes, time.process_time() - cpu


ZARR_CHUNK = 24  # steps per chunk: one day of hourly data, the whole globe


def _zarr_sums(path: str, start: int, stop: int) -> tuple[int, float]:
    """Decode steps [start, stop) of the Zarr store with zarr and sum them: (bytes, CPU-s)."""
    cpu = time.process_time()
    var = zarr.open_array(f"{path}/{VARIABLE}", mode="r")
    nbytes = 0
    for t in range(start, stop, ZARR_CHUNK):
        block = var[t : min(t + ZARR_CHUNK, stop)]
        block.sum(axis=0, dtype="f8")
        nbytes += block.nbytes
    return nbytes, time.process_time() - cpu


def zarr_store(files: list[Path], root: Path) -> Path:
    """The files' variable as one CMIP6-like Zarr v2 store (built once, then reused)."""
    path = root / "bench-zarr" / f"{VARIABLE}.zarr"
    if (path / ".zmetadata").exists():
        return path
    with xr.open_mfdataset(files, engine="h5netcdf") as ds:
        da = ds[VARIABLE].rename(time0="time")
        tmp = path.with_suffix(".tmp")
        da.to_dataset().chunk({"time": ZARR_CHUNK, "lat": -1, "lon": -1}).to_zarr(
            tmp,
            mode="w",
            zarr_format=2,
            consolidated=True,
            encoding={VARIABLE: {"chunks": (ZARR_CHUNK, *da.shape[1:])}},
        )
    tmp.rename(path)
    return path


def zarr_limit(pool: ProcessPoolExecutor, store: Path, steps: int) -> dict[str, float]:
    """(i) on the Zarr store: every chunk decoded and summed, one process per core."""
    per_job = max(ZARR_CHUNK, steps // (2 * (os.cpu_count() or 1)) // ZARR_CHUNK * ZARR_CHUNK)
    starts = list(range(0, steps, per_job))
    t0 = time.perf_counter()
    results = list(
        pool.map(
            _zarr_sums,
            [str(store)] * len(starts),
            starts,
            [min(t + per_job, steps) for t in starts],
        )
    )
    return {
        "bytes": sum(b for b, _ in results),
        "wall_s": time.perf_counter() - t0,
        "cpu_s": sum(c for _, c in results),
    }


def zarr_spec(store: Path, root: Path, netcdf: KernelSpec) -> KernelSpec:
    """The kernel's spec over the Zarr store, as the catalog would describe it."""
    var = zarr.open_array(f"{store}/{VARIABLE}", mode="r")
    asset = AssetRef(
        path=str(store.relative_to(root)),
        format="zarr",
        steps=var.shape[0],
        nbytes=var.size * var.dtype.itemsize,
        time_chunk=ZARR_CHUNK,
    )
    return netcdf.model_copy(update={"assets": [asset]})


def user_xarray_zarr(store: Path, client: Client) -> xr.DataArray:
    """(iii) on the Zarr store: what a user would write."""
    da = xr.open_zarr(store)[VARIABLE]
    return client.compute(da.groupby("time.month").mean()).result()


def decode_limit(pool: ProcessPoolExecutor, files: list[Path]) -> dict[str, float]:
    """(i): every chunk decoded and summed, work spread over one process per core."""
    jobs = []
    for path in files:
        with h5py.File(path, "r") as f:
            steps, chunk = f[VARIABLE].shape[0], f[VARIABLE].chunks[0]
        per_job = max(chunk, steps // (2 * (os.cpu_count() or 1)) // chunk * chunk)
        jobs += [(str(path), t, min(t + per_job, steps)) for t in range(0, steps, per_job)]
    t0 = time.perf_counter()
    results = list(pool.map(_slab_sums, *zip(*jobs, strict=True)))
    wall = time.perf_counter() - t0
    return {
        "bytes": sum(b for b, _ in results),
        "wall_s": wall,
        "cpu_s": sum(c for _, c in results),
    }


def _cluster_pids(client: Client) -> list[int]:
    pids = list(client.run(os.getpid).values())
    pids.append(client.run_on_scheduler(os.getpid))
    for pid in list(pids):  # the nannies too: they are part of what the region spends
        try:
            parent = psutil.Process(pid).parent()
            if parent and "nanny" in " ".join(parent.cmdline()).lower():
                pids.append(parent.pid)
        except psutil.Error:
            continue
    return pids


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def on_cluster(client: Client, fn) -> tuple[dict[str, float], object]:
    pids = _cluster_pids(client)
    c0, t0 = _cpu(pids), time.perf_counter()
    out = fn()
    return {"wall_s": time.perf_counter() - t0, "cpu_s": _cpu(pids) - c0}, out


def spec_for(files: list[Path], root: Path) -> KernelSpec:
    assets = []
    for path in files:
        with h5py.File(path, "r") as f:
            var = f[VARIABLE]
            assets.append(
                AssetRef(
                    path=str(path.relative_to(root)),
                    format="netcdf",
                    size=path.stat().st_size,
                    steps=var.shape[0],
                    nbytes=var.size * var.dtype.itemsize,
                    time_chunk=var.chunks[0],
                )
            )
    return KernelSpec(
        variable=VARIABLE,
        reduction="mean",
        start_key=10000101,
        end_key=30001231,
        bbox=[-180, -90, 180, 90],
        over="time",
        group_by="month",
        assets=assets,
    )


def user_xarray(files: list[Path], client: Client) -> xr.DataArray:
    """(iii): what a user would write."""
    ds = xr.open_mfdataset(files, engine="h5netcdf", parallel=True)
    da = ds[VARIABLE].rename(time0="time")
    return client.compute(da.groupby("time.month").mean()).result()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    info = print_machine()
    settings, config = common.up()
    region_cfg = config.region(REGION)
    common.ensure_era5(settings, config, [REGION])
    root = settings.region_root(REGION)
    files = sorted((root / "era5-pds").rglob(f"{VARIABLE}.nc"))
    spec = spec_for(files, root)
    decoded = sum(a.nbytes for a in spec.assets)
    region = from_stack().region(REGION)
    workers = f"{region_cfg.workers} process(es) x {region_cfg.threads_per_worker} thread(s)"
    print(f"input: {len(files)} files, {decoded / 1e6:.0f} MB decoded; {REGION} workers: {workers}")

    store = zarr_store(files, root)
    zspec = zarr_spec(store, root, spec)
    steps = zspec.assets[0].steps
    names = ("limit", "kernel", "xarray", "zarr_limit", "zarr_kernel", "zarr_xarray", "one_worker")
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    cores = os.cpu_count() or 1
    with (
        ProcessPoolExecutor(cores) as pool,
        Client(region.scheduler_address, security=region.dask_security(), timeout=30) as client,
    ):
        pool.submit(_slab_sums, str(files[0]), 0, 0).result()  # processes started and warm
        user_xarray(files[:1], client)  # imports on the workers, as a user's second run
        compute_partial(str(root), spec.model_copy(update={"assets": spec.assets[:1]}), client)
        kernel_out = xr_out = zarr_out = zarr_xr_out = None
        addresses = sorted(client.scheduler_info()["workers"])
        one = addresses[:1]
        _zarr_sums(str(store), 0, ZARR_CHUNK)
        for _ in range(args.repeat):
            runs["limit"].append(decode_limit(pool, files))
            figures, (agg, _) = on_cluster(client, lambda: compute_partial(str(root), spec, client))
            runs["kernel"].append({"bytes": decoded, **figures})
            kernel_out = finalize(agg, "mean")
            figures, xr_out = on_cluster(client, lambda: user_xarray(files, client))
            runs["xarray"].append({"bytes": decoded, **figures})
            runs["zarr_limit"].append(zarr_limit(pool, store, steps))
            figures, (zagg, _) = on_cluster(
                client, lambda: compute_partial(str(root), zspec, client)
            )
            runs["zarr_kernel"].append({"bytes": decoded, **figures})
            zarr_out = finalize(zagg, "mean")
            figures, zarr_xr_out = on_cluster(client, lambda: user_xarray_zarr(store, client))
            runs["zarr_xarray"].append({"bytes": decoded, **figures})
            figures, _ = on_cluster(
                client, lambda: compute_partial(str(root), spec, client, workers=one)
            )
            runs["one_worker"].append({"bytes": decoded, **figures})
    assert kernel_out is not None and xr_out is not None
    assert zarr_out is not None and zarr_xr_out is not None
    np.testing.assert_allclose(zarr_out.values, kernel_out.values, rtol=1e-12)  # same values
    np.testing.assert_allclose(zarr_out.values, zarr_xr_out.transpose(*zarr_out.dims).values, 1e-5)
    diff = float(np.nanmax(np.abs(kernel_out.values - xr_out.transpose(*kernel_out.dims).values)))
    np.testing.assert_allclose(kernel_out.values, xr_out.transpose(*kernel_out.dims).values, 1e-5)

    def rate(name: str, key: str) -> float:
        return statistics.median(r["bytes"] / 1e6 / r[key] for r in runs[name])

    rows = {n: {"mb_s": rate(n, "wall_s"), "mb_cpu_s": rate(n, "cpu_s")} for n in runs}
    labels = {
        "limit": f"(i) decode limit: h5py + numpy, {cores} processes",
        "kernel": "(ii) Proxima regional kernel on the cluster",
        "xarray": "(iii) xarray open_mfdataset + groupby (flox) on the cluster",
        "zarr_limit": f"(i) Zarr decode limit: zarr + numpy, {cores} processes",
        "zarr_kernel": "(ii) Proxima regional kernel on the Zarr store",
        "one_worker": "(ii) the kernel on one worker process of the region",
        "zarr_xarray": "(iii) xarray open_zarr + groupby (flox) on the cluster",
    }
    print("\n| way | MB/s (wall) | MB per CPU-s | runs (s) |\n|---|---|---|---|")
    for name, row in rows.items():
        walls = ", ".join(f"{r['wall_s']:.2f}" for r in runs[name])
        print(f"| {labels[name]} | {row['mb_s']:.0f} | {row['mb_cpu_s']:.0f} | {walls} |")
    ratio = rows["kernel"]["mb_s"] / rows["limit"]["mb_s"]
    zratio = rows["zarr_kernel"]["mb_s"] / rows["zarr_limit"]["mb_s"]
    scaling = rows["kernel"]["mb_s"] / rows["one_worker"]["mb_s"]
    print(f"Zarr: kernel / limit (wall): {zratio:.2f}")
    print(f"scaling: kernel on {len(addresses)} worker processes vs 1: {scaling:.2f}")
    print(
        f"\nkernel / limit (wall): {ratio:.2f}; xarray / limit: "
        f"{rows['xarray']['mb_s'] / rows['limit']['mb_s']:.2f}; kernel vs xarray max abs "
        f"difference {diff:.2e} K (xarray averages float32 in float32)"
    )
    path = common.save(
        "reduction_limit",
        {
            "machine": info,
            "region": REGION,
            "files": len(files),
            "decoded_bytes": decoded,
            "workers": workers,
            "limit_mb_s": rows["limit"]["mb_s"],
            "kernel_mb_s": rows["kernel"]["mb_s"],
            "xarray_mb_s": rows["xarray"]["mb_s"],
            "limit_mb_cpu_s": rows["limit"]["mb_cpu_s"],
            "kernel_mb_cpu_s": rows["kernel"]["mb_cpu_s"],
            "xarray_mb_cpu_s": rows["xarray"]["mb_cpu_s"],
            "kernel_over_limit": ratio,
            "zarr_limit_mb_s": rows["zarr_limit"]["mb_s"],
            "zarr_kernel_mb_s": rows["zarr_kernel"]["mb_s"],
            "zarr_xarray_mb_s": rows["zarr_xarray"]["mb_s"],
            "zarr_kernel_over_limit": zratio,
            "zarr_chunks": [ZARR_CHUNK, "whole globe"],
            "scaling_2_workers": scaling,
            "region_worker_processes": len(addresses),
            "max_abs_diff_kernel_xarray": diff,
            "runs": runs,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
