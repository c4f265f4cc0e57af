"""Amazon ECS: waking a data region's Dask workers, which the minimal profile scales to
none when idle (infra/aws's data-region stack; Application Auto Scaling scales them in
again after 15 idle minutes).

A run only raises the worker service's desired count: the scheduler (on Fargate) is
always up, so the run's tasks queue on it until workers join (a host boots, mounts FSx
and pulls the image: minutes, see docs/aws.md).
"""

from __future__ import annotations

from typing import Any

from proxima import call_log
from proxima.platform.model import Region


def wake_workers(region: Region, client: Any = None) -> bool:
    """Set ``region``'s worker service to ``region.workers`` tasks if it has fewer.

    Args:
        region: The region; without ``ecs_worker_service`` (the local stack, a fixed
            address) nothing is called.
        client: A boto3 ECS client (default: one for the region).

    Returns:
        Whether the service was asked for more tasks.
    """
    if not region.ecs_worker_service:
        return False
    import boto3

    cluster, service = region.ecs_worker_service.split("/", 1)
    ecs = call_log.watch(client or boto3.client("ecs", region_name=region.name))
    (found,) = ecs.describe_services(cluster=cluster, services=[service])["services"]
    if found["desiredCount"] >= region.workers:
        return False
    ecs.update_service(cluster=cluster, service=service, desiredCount=region.workers)
    return True
