"""What machine a benchmark ran on (printed with every figure)."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

import psutil


def describe() -> dict[str, Any]:
    """CPU, memory, OS, Python and key package versions."""
    import dask
    import prefect
    import xarray

    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "java": (java.stderr.splitlines() or ["?"])[0],
        "prefect": prefect.__version__,
        "dask": dask.__version__,
        "xarray": xarray.__version__,
    }


def print_machine() -> dict[str, Any]:
    """Print and return the machine description."""
    info = describe()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    return info
