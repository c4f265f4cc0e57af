"""The Prefect layer: flows, their subflows and tasks, and how they reach the clusters."""

from flows.prefect_clients import share_tls_context

# Every process that runs Proxima's flows or tasks imports this package first (a Dask
# worker unpickles the task from it before Prefect's engine makes its clients).
share_tls_context()
