"""Start, watch and stop the background processes of the local stack."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil


def spawn(
    argv: Sequence[str], *, env: Mapping[str, str], log_path: Path, cwd: Path | None = None
) -> int:
    """Start ``argv`` detached in its own session, appending its output to ``log_path``.

    Returns:
        The PID, which is also the process-group id (so `down` can stop its children).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    return proc.pid


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop(pid: int, timeout: float = 15.0) -> None:
    """Stop a process, its process group and every descendant: TERM, then KILL.

    A second TERM is sent halfway through the grace period, because a Prefect
    worker whose server is already gone may ignore the first.
    """
    procs = _tree(pid)
    if not procs:
        return
    for sig_round in (signal.SIGTERM, signal.SIGTERM):
        try:
            os.killpg(pid, sig_round)
        except (ProcessLookupError, PermissionError):
            pass
        for proc in procs:
            try:
                proc.send_signal(sig_round)
            except psutil.NoSuchProcess:
                pass
        _, procs = psutil.wait_procs(procs, timeout=timeout / 2)
        if not procs:
            return
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=5)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, or a note that there is none."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants.

    A descendant may exit between listing the tree and reading its memory (a
    Prefect worker's flow-run process, a Dask nanny restarting); it then counts
    as zero rather than failing the status of the whole stack.
    """
    total = 0
    for process in _tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:  # a zombie is one too
            continue
    return total
