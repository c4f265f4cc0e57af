"""The `OpenSearchCatalog` block: where the catalog lives and how to authenticate."""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from prefect_aws import AwsCredentials
from pydantic import Field, SecretStr


class OpenSearchCatalog(Block):
    """The catalog in OpenSearch (a local node, or Amazon OpenSearch Service with SigV4).

    Attributes:
        hosts: OpenSearch endpoints.
        alias: The alias readers and writers use.
    """

    _block_type_name = "Proxima OpenSearch Catalog"
    _block_type_slug = "proxima-opensearch-catalog"
    _description = "The OpenSearch index (behind an alias) that catalogs every region's data."
    _code_example = """
    ```python
    from blocks.opensearch_catalog import OpenSearchCatalog

    catalog = OpenSearchCatalog.load("proxima-catalog")
    print(catalog.hosts, catalog.alias)
    ```
    """

    hosts: list[str] = Field(
        min_length=1,
        description="OpenSearch endpoint URLs, e.g. ['https://search-x.es.amazonaws.com'].",
    )
    alias: str = Field(default="proxima-assets", description="Alias over the versioned indices.")
    auth: Literal["none", "basic", "sigv4"] = Field(
        default="none", description="How to authenticate: none, HTTP basic, or AWS SigV4."
    )
    username: str | None = Field(default=None, description="Basic-auth user name.")
    password: SecretStr | None = Field(default=None, description="Basic-auth password.")
    aws_credentials: AwsCredentials | None = Field(
        default=None, description="Credentials for SigV4 (Amazon OpenSearch Service)."
    )
    aws_region: str | None = Field(default=None, description="Region of the SigV4 endpoint.")
    verify_certs: bool = Field(default=True, description="Verify the server's TLS certificate.")
    ca_certs: str | None = Field(default=None, description="CA bundle path for TLS verification.")
    replicas: int = Field(
        default=0,
        ge=0,
        description="Replicas of the catalog index: 0 on one node, 1 on a zone-aware pair.",
    )
