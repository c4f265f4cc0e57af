"""A record of the calls Proxima makes to external services: OpenSearch REST requests
(method and path) and AWS API operations (service, operation, the resource named).

Off unless ``PROXIMA_RECORD_CALLS`` names a directory (or ``recording`` is active in
this process). The test of infra/aws's IAM runs the workflows on the local stack with
it on and checks every recorded call against the synthesized policies of the role
that would make it on AWS: IAM derived from the calls, not from reading the code.
Each process appends JSON lines to ``<directory>/<pid>.jsonl``.
"""

from __future__ import annotations

import contextvars
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from proxima.settings import get_settings

_directory: Path | None = None  # set by ``recording`` in this process
_silenced: contextvars.ContextVar[bool] = contextvars.ContextVar("silenced", default=False)


def _target() -> Path | None:
    return _directory or get_settings().record_calls


@contextmanager
def recording(directory: Path) -> Iterator[None]:
    """Record this process's calls into ``directory`` while the block runs."""
    global _directory
    directory.mkdir(parents=True, exist_ok=True)
    previous, _directory = _directory, directory
    try:
        yield
    finally:
        _directory = previous


@contextmanager
def local_stand_in() -> Iterator[None]:
    """Calls made inside are the local stand-in of what AWS does another way (the
    import from the region's S3 endpoint, which FSx does on AWS): not recorded.
    """
    token = _silenced.set(True)
    try:
        yield
    finally:
        _silenced.reset(token)


def record(system: str, action: str, resource: str) -> None:
    """Append one call, if recording is on."""
    directory = _target()
    if directory is None or _silenced.get():
        return
    entry = {
        "t": time.time(),
        "pid": os.getpid(),
        "region": get_settings().region,  # set on regional Dask workers
        "system": system,
        "action": action,
        "resource": resource,
    }
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / f"{os.getpid()}.jsonl").open("a") as out:
        out.write(json.dumps(entry) + "\n")


def watch(client: Any) -> Any:
    """Record every operation of a boto3 client (returns the client)."""

    def on_call(model: Any, params: dict[str, Any], **_: Any) -> None:
        keys = ("Bucket", "Key", "FileSystemId", "TaskIds", "cluster", "service", "services")
        named = {k: params[k] for k in keys if k in params}
        named["region"] = client.meta.region_name  # ECS's ARNs name the region acted on
        record("aws", f"{model.service_model.service_name}:{model.name}", json.dumps(named))

    # on the API's own parameters, before any handler could answer the call itself
    # (botocore's Stubber); the unique id keeps a client watched twice from recording twice
    client.meta.events.register_first(
        "before-parameter-build.*.*", on_call, unique_id="proxima-call-log"
    )
    return client


def read(directory: Path, since: float = 0.0) -> list[dict[str, Any]]:
    """Every call recorded in ``directory`` at or after ``since``, in time order."""
    calls = []
    for path in directory.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                if entry["t"] >= since:
                    calls.append(entry)
    return sorted(calls, key=lambda c: c["t"])
