"""Paths under a region's root: nothing outside it is ever opened."""

from __future__ import annotations

from pathlib import Path

from proxima.errors import ProximaError

MAX_PATH = 1024


class UnsafePath(ProximaError):
    """A path that would leave the region's root, or is not a path at all."""


def inside(root: str | Path, relpath: str) -> Path:
    """``root / relpath``, resolved (symlinks too), refused unless it stays inside ``root``.

    Raises:
        UnsafePath: absolute paths, ``..`` escapes, NUL bytes, over-long paths, or
            symlinks that point outside the root.
    """
    if not relpath or "\x00" in relpath or len(relpath) > MAX_PATH:
        raise UnsafePath(f"refused path {relpath[:80]!r}: empty, NUL byte or too long")
    if relpath.startswith(("/", "\\")) or Path(relpath).is_absolute():
        raise UnsafePath(f"refused absolute path {relpath[:80]!r}")
    base = Path(root).resolve()
    target = (base / relpath).resolve()
    if not target.is_relative_to(base):
        raise UnsafePath(f"refused path {relpath[:80]!r}: it leaves the region root")
    return target
