"""Who may call which catalog paths: the IAM side of every OpenSearch request the code
makes (tests/test_aws_iam.py records the requests on the local stack and checks each
against these grants).

OpenSearch Service authorizes ``es:ESHttp<Method>`` on ``<domain ARN>/<path>``; IAM's
``*`` spans ``/``, so ``<domain>/proxima-assets*`` covers the alias, its versioned
indices (``proxima-assets-v…``) and every path under them (``_search``, ``_count``,
``_doc``, ``_search/point_in_time``, ``_settings``, ``_refresh``).
"""

from __future__ import annotations

from typing import Literal

from aws_cdk import aws_iam as iam

LOCKS_INDEX = "proxima-locks"  # proxima/opensearch.py: the rebuild lease
READ = ["es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost"]  # searches are POSTs
WRITE = [*READ, "es:ESHttpPut", "es:ESHttpDelete"]

Caller = Literal["analyst", "refresh", "worker"]


def statements(domain_arn: str, project: str, caller: Caller) -> list[iam.PolicyStatement]:
    """The catalog grants of one kind of caller.

    Args:
        domain_arn: The OpenSearch domain's ARN.
        project: The project name; the catalog alias is ``<project>-assets``.
        caller: ``analyst`` (searches: the analysis flow and notebooks), ``refresh``
            (the catalog-refresh flow: aliases, rebuilds, the lease) or ``worker``
            (a data region's Dask workers: diff scans, bulk writes of documents and,
            in a rebuild, server-side copies of unchanged ones).
    """
    alias = f"{project}-assets"
    # the alias is looked up by its name and by an index's (GET /_alias/<index>)
    indices = [f"{domain_arn}/{alias}*", f"{domain_arn}/_alias/{alias}*"]
    # a scan opens a point in time on the index, then searches and closes it at the root
    pit = [f"{domain_arn}/_search", f"{domain_arn}/_search/point_in_time"]
    if caller == "analyst":
        return [
            iam.PolicyStatement(actions=READ, resources=indices + pit),
            iam.PolicyStatement(actions=["es:ESHttpDelete"], resources=pit[1:]),
        ]
    shared = [*indices, *pit, f"{domain_arn}/_bulk", f"{domain_arn}/_reindex"]
    if caller == "worker":
        return [iam.PolicyStatement(actions=WRITE, resources=shared)]
    refresh_only = [
        f"{domain_arn}/{LOCKS_INDEX}",
        f"{domain_arn}/{LOCKS_INDEX}/*",
        f"{domain_arn}/_aliases",
    ]
    return [iam.PolicyStatement(actions=WRITE, resources=shared + refresh_only)]
