"""The platform: its regions, catalog and results store (``model``), built from the
local stack file (``stack``) or from Prefect blocks (``blocks``).
"""

from __future__ import annotations

from proxima.platform.model import Platform, Region
from proxima.platform.stack import from_stack


def load() -> Platform:
    """The platform as flows, the CLI and notebooks see it: from the saved Prefect blocks
    when there are any, else from the local stack file.
    """
    from proxima.platform import blocks  # Prefect is imported only when it is needed

    documents = blocks.saved()
    names = blocks.region_names(documents)
    return blocks.from_blocks(names, documents) if names else from_stack()


__all__ = ["Platform", "Region", "from_stack", "load"]
