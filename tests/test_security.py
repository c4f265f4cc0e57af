"""Security: Dask over mutual TLS, secrets kept out of logs and artifacts, Prefect
basic auth. The test stack's us-west-2 cluster is TLS-only."""

from __future__ import annotations

import socket
import ssl

import pytest
from distributed import Client
from distributed.security import Security

from proxima.platform import from_stack

pytestmark = pytest.mark.reliability

TLS_REGION = "us-west-2"


def _host_port(address: str) -> tuple[str, int]:
    host, port = address.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def test_tls_region_accepts_a_client_with_the_platform_certificate(stack):
    region = from_stack().region(TLS_REGION)
    assert region.scheduler_address and region.scheduler_address.startswith("tls://")
    with Client(
        region.scheduler_address, security=region.dask_security(), timeout=10, set_as_default=False
    ) as client:
        workers = client.scheduler_info(n_workers=-1)["workers"]
    assert workers and all(address.startswith("tls://") for address in workers)


def test_tls_region_refuses_a_handshake_without_a_client_certificate(stack, settings):
    region = from_stack().region(TLS_REGION)
    host, port = _host_port(region.scheduler_address or "")
    context = ssl.create_default_context(cafile=str(settings.tls_dir / "ca.pem"))
    context.check_hostname = False  # the server is trusted; what matters is our missing cert
    with (
        pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"),
        socket.create_connection((host, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.recv(1)  # TLS 1.3: the server's refusal arrives as an alert on first read


def test_tls_region_refuses_clients_from_another_ca_or_in_plain_tcp(stack):
    region = from_stack().region(TLS_REGION)
    address = region.scheduler_address or ""
    stranger = Security.temporary()  # a valid certificate, but not signed by our CA
    with pytest.raises((OSError, TimeoutError)):
        Client(address, security=stranger, timeout=5, set_as_default=False)
    plain = address.replace("tls://", "tcp://")
    with pytest.raises((OSError, TimeoutError)):
        Client(plain, timeout=5, set_as_default=False)
