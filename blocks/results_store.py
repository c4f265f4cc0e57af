"""The `ResultsStore` block: where analysis results are written."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, model_validator

from proxima.config import EGRESS_PRICES_DEFAULT


class ResultsStore(Block):
    """A local directory or an S3 bucket/prefix for results (written atomically), and
    the region they are combined in. Writes use the flow's own AWS credentials (on ECS,
    the task role).

    Attributes:
        path: A local directory, used when no bucket is set.
        bucket: An S3 bucket for results.
    """

    _block_type_name = "Proxima Results Store"
    _block_type_slug = "proxima-results-store"
    _description = "Where cross-region analysis results land (local directory or S3)."
    _code_example = """
    ```python
    from blocks.results_store import ResultsStore

    store = ResultsStore.load("proxima-results")
    print(store.path or f"s3://{store.bucket}/{store.prefix}")
    ```
    """

    path: str | None = Field(default=None, description="Local directory for results.")
    bucket: str | None = Field(default=None, description="S3 bucket for results.")
    prefix: str = Field(default="results/", description="Key prefix inside the bucket.")
    s3_endpoint: str | None = Field(default=None, description="S3 endpoint URL (non-AWS S3).")
    client_region: str = Field(
        default="us-east-1",
        description="The region the results are combined and stored in (the scientist's).",
    )
    egress_prices: dict[str, float] = Field(
        default_factory=lambda: dict(EGRESS_PRICES_DEFAULT),
        description="USD per GB between regions, keyed 'src->dst', with a 'default'.",
    )
    footprint_factors: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Footprint factors overriding proxima/footprint/factors.yaml: "
        "{region or 'defaults': {factor: value}}.",
    )

    @model_validator(mode="after")
    def _one_target(self) -> ResultsStore:
        if not self.path and not self.bucket:
            raise ValueError("set either path (local directory) or bucket (S3)")
        return self
