"""S3: clients for a region's data repository (S3Proxy locally, AWS in production)."""

from __future__ import annotations

from typing import Any, Protocol

import boto3
from botocore.config import Config

from proxima import call_log


class Endpoint(Protocol):
    """Where a region's S3 data repository answers: a ``Region`` (or the stack file's
    ``RegionConfig``, which starts it).
    """

    @property
    def name(self) -> str: ...

    @property
    def s3_endpoint(self) -> str | None: ...


# The local S3Proxy accepts any key; real deployments use the default AWS credential chain.
LOCAL_CREDENTIALS = {"aws_access_key_id": "proxima", "aws_secret_access_key": "proxima-local"}


def _is_local(endpoint: str | None) -> bool:
    """An explicit endpoint that is not AWS's is a local (S3Proxy) one: any key works there."""
    return bool(endpoint) and "amazonaws.com" not in str(endpoint)


def session(endpoint: str | None) -> boto3.session.Session:
    """A boto3 session for ``endpoint``: fixed keys for a local one, the AWS chain else."""
    if _is_local(endpoint):
        return boto3.session.Session(
            aws_access_key_id=LOCAL_CREDENTIALS["aws_access_key_id"],
            aws_secret_access_key=LOCAL_CREDENTIALS["aws_secret_access_key"],
        )
    return boto3.session.Session()


def client(region: Endpoint, *, connect_timeout: float = 3.0, retries: int = 2) -> Any:
    """A boto3 S3 client bound to the region's data-repository endpoint."""
    made = session(region.s3_endpoint).client(
        "s3",
        region_name=region.name,
        endpoint_url=region.s3_endpoint,
        config=Config(
            connect_timeout=connect_timeout,
            read_timeout=60,
            retries={"max_attempts": retries, "mode": "standard"},
        ),
    )
    return call_log.watch(made)


def storage_options(region: Endpoint) -> dict[str, Any]:
    """fsspec/s3fs options for reading the region's buckets over HTTP."""
    opts: dict[str, Any] = {
        "client_kwargs": {"endpoint_url": region.s3_endpoint, "region_name": region.name}
    }
    if _is_local(region.s3_endpoint):
        opts |= {
            "key": LOCAL_CREDENTIALS["aws_access_key_id"],
            "secret": LOCAL_CREDENTIALS["aws_secret_access_key"],
        }
    return opts


def ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    """Create ``bucket`` if it does not exist."""
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket in existing:
        return
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
