"""Prefect block types of Proxima; register with `prefect block register -m blocks`."""

from blocks.data_region import DataRegion
from blocks.opensearch_catalog import OpenSearchCatalog
from blocks.results_store import ResultsStore

ALL_BLOCKS = (DataRegion, OpenSearchCatalog, ResultsStore)

__all__ = ["ALL_BLOCKS", "DataRegion", "OpenSearchCatalog", "ResultsStore"]
