"""OpenSearch: the catalog index, its versioned lifecycle behind an alias, and bulk writes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from opensearchpy import OpenSearch, Transport, helpers
from opensearchpy.exceptions import (
    AuthenticationException,
    AuthorizationException,
    NotFoundError,
    TransportError,
)
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from pydantic import BaseModel, Field, SecretStr

from proxima import call_log
from proxima.errors import ProximaError

RETRYABLE = {429, 500, 502, 503, 504}

SETTINGS = {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"}


class CatalogUnavailable(ProximaError):
    """OpenSearch cannot be reached or refused an operation."""


@contextmanager
def reporting(action: str) -> Iterator[None]:
    """Turn OpenSearch's refusals and unreachability into a CatalogUnavailable that
    names ``action``, the HTTP status and what to check.
    """
    try:
        yield
    except (AuthenticationException, AuthorizationException) as exc:
        raise CatalogUnavailable(
            f"the catalog refused to {action}: HTTP {exc.status_code} {exc.error}; check "
            "the credentials of the OpenSearchCatalog block (or the stack's catalog)"
        ) from exc
    except OSConnectionError as exc:
        raise CatalogUnavailable(f"the catalog is not reachable to {action}: {exc}") from exc
    except TransportError as exc:
        raise CatalogUnavailable(
            f"the catalog could not {action}: HTTP {exc.status_code} {exc.error}"
        ) from exc


@dataclass
class BulkReport:
    """The outcome of a bulk write: nothing is dropped without being listed here."""

    ok: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    retries: int = 0
    superseded: int = 0  # external-version conflicts: newer data was already indexed


class _RecordedTransport(Transport):
    """Every request's method and path go to the call log (when it records)."""

    def perform_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        call_log.record("opensearch", method, url.split("?", 1)[0])
        return super().perform_request(method, url, *args, **kwargs)


def connect(endpoint: str, *, timeout: float = 30.0, **kwargs: Any) -> OpenSearch:
    """An OpenSearch client for ``endpoint`` (auth/TLS kwargs pass through)."""
    return OpenSearch(
        hosts=[endpoint], timeout=timeout, transport_class=_RecordedTransport, **kwargs
    )


class CatalogConnection(BaseModel):
    """How to reach the catalog; travels to regional workers with the tasks."""

    hosts: list[str] = Field(min_length=1)
    alias: str = "proxima-assets"
    auth: Literal["none", "basic", "sigv4"] = "none"
    username: str | None = None
    password: SecretStr | None = None
    aws_region: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    verify_certs: bool = True
    ca_certs: str | None = None
    replicas: int = Field(
        default=0, ge=0, description="Replicas of the catalog index (1 on a zone-aware pair)."
    )

    @property
    def endpoint(self) -> str:
        """The first host."""
        return self.hosts[0]


def connect_catalog(conn: CatalogConnection, *, timeout: float = 30.0) -> OpenSearch:
    """An OpenSearch client with the connection's auth (none, basic or SigV4) and TLS."""
    kwargs: dict[str, Any] = {"timeout": timeout}
    if any(h.startswith("https") for h in conn.hosts):
        kwargs |= {"use_ssl": True, "verify_certs": conn.verify_certs}
        if conn.ca_certs:
            kwargs["ca_certs"] = conn.ca_certs
    if conn.auth == "basic":
        secret = conn.password.get_secret_value() if conn.password else ""
        kwargs["http_auth"] = (conn.username or "", secret)
    elif conn.auth == "sigv4":
        import boto3
        from opensearchpy import AWSV4SignerAuth, RequestsHttpConnection

        session = boto3.session.Session(
            aws_access_key_id=conn.aws_access_key_id,
            aws_secret_access_key=(
                conn.aws_secret_access_key.get_secret_value()
                if conn.aws_secret_access_key
                else None
            ),
            region_name=conn.aws_region,
        )
        credentials = session.get_credentials()
        if credentials is None:
            raise CatalogUnavailable("SigV4 needs AWS credentials; none were found")
        kwargs["http_auth"] = AWSV4SignerAuth(credentials, conn.aws_region or "us-east-1", "es")
        kwargs["connection_class"] = RequestsHttpConnection
    return OpenSearch(hosts=conn.hosts, transport_class=_RecordedTransport, **kwargs)


def new_index_name(alias: str) -> str:
    """A fresh versioned index name behind ``alias``."""
    return f"{alias}-v{datetime.now(UTC).strftime('%Y%m%d%H%M%S%f')}"


def create_index(client: OpenSearch, name: str, mapping: dict[str, Any], replicas: int = 0) -> None:
    """Create ``name`` with ``mapping`` (the catalog's is ``catalog.model.MAPPING``)."""
    settings = {**SETTINGS, "number_of_replicas": replicas}
    client.indices.create(index=name, body={"settings": settings, "mappings": mapping})


def alias_target(client: OpenSearch, alias: str) -> str | None:
    """The index ``alias`` points at (None if the alias does not exist)."""
    try:
        found = client.indices.get_alias(name=alias)
    except NotFoundError:
        return None
    names = sorted(found)
    return names[-1] if names else None


def ensure_alias(client: OpenSearch, alias: str, mapping: dict[str, Any], replicas: int = 0) -> str:
    """Make sure ``alias`` exists, creating a first versioned index (with ``mapping``
    and ``replicas``) if needed.
    """
    try:
        target = alias_target(client, alias)
    except (OSConnectionError, TransportError) as exc:
        raise CatalogUnavailable(f"OpenSearch is not reachable: {exc}") from exc
    if target:
        # additive mapping changes (a new field) reach an index made by older code
        client.indices.put_mapping(index=target, body=mapping)
        return target
    name = new_index_name(alias)
    create_index(client, name, mapping, replicas)
    client.indices.update_aliases(body={"actions": [{"add": {"index": name, "alias": alias}}]})
    return name


def swap_alias(client: OpenSearch, alias: str, new_index: str) -> str | None:
    """Point ``alias`` at ``new_index`` in one atomic call; return the old index."""
    old = alias_target(client, alias)
    actions: list[dict[str, Any]] = [{"add": {"index": new_index, "alias": alias}}]
    if old and old != new_index:
        actions.insert(0, {"remove": {"index": old, "alias": alias}})
    client.indices.update_aliases(body={"actions": actions})
    return old


def cleanup_orphans(client: OpenSearch, alias: str) -> list[str]:
    """Delete versioned indices of ``alias`` that the alias does not point at."""
    current = alias_target(client, alias)
    found = client.indices.get(index=f"{alias}-v*", ignore_unavailable=True, allow_no_indices=True)
    orphans = sorted(name for name in found if name != current)
    for name in orphans:
        client.indices.delete(index=name, ignore_unavailable=True)
    return orphans


def bulk(
    client: OpenSearch,
    actions: Iterable[dict[str, Any]],
    *,
    chunk_size: int = 500,
    max_retries: int = 5,
    initial_backoff: float = 0.5,
    refresh: bool = True,
) -> BulkReport:
    """Send actions with retries on 429/5xx; collect every per-document error.

    ``streaming_bulk`` retries per-document 429s only with ``raise_on_error=False``;
    whole-request 5xx and connection errors are retried here with backoff. Ids are
    deterministic, so a re-sent chunk is idempotent.
    """
    report = BulkReport()
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        by_id = {str(a["_id"]): a for a in chunk}
        pending = list(chunk)
        delay = initial_backoff
        for attempt in range(max_retries + 1):
            retry: list[dict[str, Any]] = []
            last = attempt == max_retries
            try:
                for ok, item in helpers.streaming_bulk(
                    client,
                    pending,
                    chunk_size=len(pending),
                    max_retries=max_retries,
                    initial_backoff=initial_backoff,  # type: ignore[arg-type]
                    raise_on_error=False,
                    raise_on_exception=False,
                ):
                    op_type, op = next(iter(item.items()))
                    status = op.get("status")
                    if ok or (status == 404 and op_type == "delete") or status == 409:
                        # 409 under external versioning: newer data is already indexed
                        report.ok += 1
                        report.superseded += status == 409
                    elif status in RETRYABLE and not last:
                        retry.append(by_id[str(op.get("_id"))])
                    else:
                        report.errors.append(
                            {"id": op.get("_id"), "status": status, "error": op.get("error")}
                        )
            except (OSConnectionError, TransportError) as exc:
                status = getattr(exc, "status_code", None)
                if last or (isinstance(status, int) and status not in RETRYABLE):
                    report.errors.extend(
                        {"id": a.get("_id"), "status": status, "error": str(exc)} for a in pending
                    )
                    return
                retry = pending
            if not retry:
                return
            report.retries += 1
            time.sleep(delay)
            delay *= 2
            pending = retry

    indices: set[str] = set()
    for action in actions:
        indices.add(action["_index"])
        chunk.append(action)
        if len(chunk) >= chunk_size:
            flush()
            chunk = []
    if chunk:
        flush()
    if refresh and indices:
        client.indices.refresh(index=",".join(sorted(indices)))
    return report


def scan(
    client: OpenSearch,
    index: str,
    query: dict[str, Any],
    source: list[str] | bool = True,
    page_size: int = 1000,
) -> Iterator[dict[str, Any]]:
    """Every hit of ``query`` (beyond 10,000) with a point in time and search_after."""
    pit = client.create_pit(index=index, params={"keep_alive": "2m"})["pit_id"]
    try:
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {
                "size": page_size,
                "query": query,
                "_source": source,
                "pit": {"id": pit, "keep_alive": "2m"},
                "sort": [{"region": "asc"}, {"path": "asc"}],
            }
            if after is not None:
                body["search_after"] = after
            hits = client.search(body=body)["hits"]["hits"]
            if not hits:
                return
            yield from hits
            after = hits[-1]["sort"]
    finally:
        client.delete_pit(body={"pit_id": [pit]})


COPY_IDS = 10_000  # ids per _reindex request
COPY_BATCH = 1_000  # documents per scroll batch inside it


def copy_documents(client: OpenSearch, source: str, dest: str, ids: list[str]) -> int:
    """Copy the documents ``ids`` from index ``source`` to ``dest`` inside the cluster
    (``_reindex``: nothing travels through this process), keeping their external
    versions, so a newer document already in ``dest`` is never overwritten.

    Each request stays at a few scroll batches: OpenSearch 2.19 answers with one
    ``TASK_RESOURCE_USAGE`` header per batch, and Python's HTTP client refuses a
    response with more than 100 headers (the client then retried the whole copy).

    Returns:
        How many of ``ids`` ``dest`` now holds from ``source`` (a document already there
        at the same or a newer version, e.g. from a retried request, counts).

    Raises:
        ProximaError: when any document could not be copied.
    """
    present = 0
    for start in range(0, len(ids), COPY_IDS):
        out = client.reindex(
            body={
                "conflicts": "proceed",
                "source": {
                    "index": source,
                    "query": {"ids": {"values": ids[start : start + COPY_IDS]}},
                    "size": COPY_BATCH,
                },
                "dest": {"index": dest, "version_type": "external"},
            },
            refresh=False,
            request_timeout=600,
        )
        if out.get("failures"):
            raise ProximaError(
                f"copying documents from {source} to {dest} failed, first: {out['failures'][:3]}"
            )
        present += sum(int(out.get(k, 0)) for k in ("created", "updated", "version_conflicts"))
    return present


LOCKS_INDEX = "proxima-locks"


class CatalogBusy(ProximaError):
    """Another run holds the lease (e.g. a full rebuild is already running)."""


@contextmanager
def lease(
    client: OpenSearch,
    name: str,
    owner: str,
    *,
    ttl_s: float = 6 * 3600,
    is_stale: Callable[[dict[str, Any]], bool] = lambda _: False,
) -> Iterator[None]:
    """Hold an exclusive lease stored as a document, created only if absent.

    A lease whose holder is known to be gone (``is_stale``, e.g. its Prefect flow run
    crashed) or whose TTL passed is taken over with optimistic concurrency control,
    so two contenders can never both win it.

    Raises:
        CatalogBusy: A live holder has it.
    """
    now = time.time()
    body = {"owner": owner, "acquired_at": now, "expires_at": now + ttl_s}
    if not client.indices.exists(index=LOCKS_INDEX):
        try:
            client.indices.create(index=LOCKS_INDEX, body={"settings": SETTINGS})
        except TransportError as exc:
            if "resource_already_exists" not in str(exc):
                raise
    try:
        made = client.index(index=LOCKS_INDEX, id=name, body=body, op_type="create", refresh=True)
    except TransportError as exc:
        if getattr(exc, "status_code", None) != 409:
            raise
        held = client.get(index=LOCKS_INDEX, id=name)
        holder = held["_source"]
        if holder["expires_at"] > now and not is_stale(holder):
            since = datetime.fromtimestamp(holder["acquired_at"], UTC).isoformat(timespec="seconds")
            raise CatalogBusy(
                f"{name} is held by {holder['owner']} since {since}; try again when it ends"
            ) from exc
        try:
            made = client.index(
                index=LOCKS_INDEX,
                id=name,
                body=body,
                if_seq_no=held["_seq_no"],
                if_primary_term=held["_primary_term"],
                refresh=True,
            )
        except TransportError as lost:
            raise CatalogBusy(f"{name} was taken over by another run just now") from lost
    try:
        yield
    finally:
        try:
            client.delete(
                index=LOCKS_INDEX,
                id=name,
                if_seq_no=made["_seq_no"],
                if_primary_term=made["_primary_term"],
                refresh=True,
            )
        except TransportError:
            pass  # taken over after our TTL ran out: not ours to delete
