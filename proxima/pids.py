"""Whether a process is alive, for the stack's services and for writers of results."""

from __future__ import annotations

import psutil


def alive(pid: int | None) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            proc.wait(timeout=0)  # reap our own child so the PID really goes away
            return False
        return True
    except (psutil.NoSuchProcess, psutil.TimeoutExpired, ChildProcessError):
        return False
