"""Proxima: scientific analyses run next to the data, across regions.

For notebooks::

    import proxima
    px = proxima.connect()

Submodules import nothing heavy through this package: ``connect`` and ``Proxima`` are
loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxima.errors import ProximaError

if TYPE_CHECKING:
    from proxima.client import Proxima, connect

__all__ = ["Proxima", "ProximaError", "connect"]


def __getattr__(name: str) -> Any:
    if name in ("Proxima", "connect"):
        from proxima import client

        return getattr(client, name)
    raise AttributeError(f"module 'proxima' has no attribute {name!r}")
