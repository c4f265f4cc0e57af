"""One TLS context for every Prefect API client of a process.

Prefect 3.9 builds a new ``ssl.SSLContext`` from the certifi bundle for each API client
it makes (16 ms each on this machine), and its engines make two per task run on a Dask
worker and several per flow run: 40 ms of every regional task's start, measured. The
context depends only on two settings, so each process builds it once per pair and gives
it to every client it makes (what PrefectHQ/prefect#19106 proposes upstream). A caller
that passes its own ``verify`` keeps it.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
from typing import Any

import certifi
from prefect.client import orchestration
from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_TLS_INSECURE_SKIP_VERIFY


@functools.cache
def _context(cert_file: str | None, skip_verify: bool) -> ssl.SSLContext:
    """The context Prefect would build for these settings, built once."""
    if skip_verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=cert_file or certifi.where())


def shared_context() -> ssl.SSLContext:
    """This process's TLS context for the Prefect API, under the current settings."""
    return _context(
        PREFECT_API_SSL_CERT_FILE.value(), bool(PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value())
    )


def share_tls_context() -> None:
    """Make every Prefect API client of this process use :func:`shared_context`."""
    for cls in (orchestration.PrefectClient, orchestration.SyncPrefectClient):
        original = cls.__init__
        if getattr(original, "_shares_tls_context", False):
            continue

        @functools.wraps(original)
        def init(
            self: Any,
            api: Any,
            *args: Any,
            httpx_settings: dict[str, Any] | None = None,
            _original: Any = original,
            **kwargs: Any,
        ) -> None:
            settings = dict(httpx_settings or {})
            settings.setdefault("verify", shared_context())
            _original(self, api, *args, httpx_settings=settings, **kwargs)

        init._shares_tls_context = True  # type: ignore[attr-defined]
        cls.__init__ = init  # type: ignore[method-assign]


def warm_up() -> None:
    """Build once, in the flow launcher before it forks, what each flow run would build
    for itself on its first API calls: the shared TLS context, and the pydantic models
    of Prefect's client schemas, which Prefect defers until first use (py-spy of forked
    runs: ~20 ms for the context and ~35 ms of model building in every run's start).
    """
    from pydantic import BaseModel

    share_tls_context()
    shared_context()
    pending = [BaseModel]
    while pending:
        for model in pending.pop().__subclasses__():
            pending.append(model)
            if model.__module__.startswith("prefect") and not model.__pydantic_complete__:
                with contextlib.suppress(Exception):  # a model that cannot be built yet
                    model.model_rebuild()
