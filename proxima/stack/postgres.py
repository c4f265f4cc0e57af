"""The Prefect server's PostgreSQL database on the local stack.

Prefect on SQLite answers two concurrent writes with "database is locked" → HTTP 503,
and its client then backs off 2 s: measured here, the second region's subflow of every
analysis started ~2 s after the first. Prefect recommends PostgreSQL for concurrent
work; the local stack runs Debian's server from a data directory in the state dir,
as the ``postgres`` system user when started as root (the server refuses root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from proxima.errors import StackError

USER = "prefect"
DATABASE = "postgres"


def bin_dir() -> Path:
    """The newest installed PostgreSQL server's bin directory."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    if which := shutil.which("postgres"):
        return Path(which).parent
    raise StackError(
        "PostgreSQL not found: the Prefect server's database needs it. Install Debian's "
        "postgresql package (infra/local/bootstrap.sh does), or set `prefect.database: "
        "sqlite` in the stack file (concurrent runs then stall 2 s on database locks)."
    )


def _as_owner(argv: list[str]) -> list[str]:
    """Run as the ``postgres`` user when we are root (the server refuses root)."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def ensure_cluster(data_dir: Path) -> None:
    """Create the database cluster once (trust auth, loopback TCP only)."""
    if (data_dir / "PG_VERSION").exists():
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres", "postgres")
    data_dir.chmod(0o700)
    out = subprocess.run(
        _as_owner(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ]
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise StackError(f"initdb failed for {data_dir}: {out.stderr.strip()[-800:]}")


def _allow(data_dir: Path, host: str) -> None:
    """Trust only connections from the address the server listens on (its own host:
    the Prefect server beside it), nothing else.
    """
    (data_dir / "pg_hba.conf").write_text(
        "# written by proxima: the Prefect server connects from the listen address only\n"
        f"host all {USER} {host}/32 trust\n"
    )


def argv(data_dir: Path, host: str, port: int) -> list[str]:
    """The server's command line (creates the cluster first if needed)."""
    ensure_cluster(data_dir)
    _allow(data_dir, host)
    return _as_owner(
        [
            str(bin_dir() / "postgres"),
            "-D",
            str(data_dir),
            "-h",
            host,
            "-p",
            str(port),
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
            # A local development database: a killed process loses nothing (the OS
            # keeps the pages), only a power cut could; commits need not wait for disk.
            "-c",
            "synchronous_commit=off",
        ]
    )


def ready(host: str, port: int) -> bool:
    """Whether the server accepts connections."""
    out = subprocess.run(
        [str(bin_dir() / "pg_isready"), "-h", host, "-p", str(port), "-U", USER, "-t", "2"],
        capture_output=True,
        check=False,
    )
    return out.returncode == 0


def url(host: str, port: int) -> str:
    """The SQLAlchemy URL Prefect's server connects with."""
    return f"postgresql+asyncpg://{USER}@{host}:{port}/{DATABASE}"
