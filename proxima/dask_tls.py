"""Mutual TLS for Dask: a private CA, certificates for each region's cluster and for
the clients, and the :class:`distributed.security.Security` every connection uses.

A regional scheduler reachable from another region runs any code it is sent, so
in TLS mode it only accepts peers holding a certificate signed by the platform's CA
(distributed requires client certificates whenever a CA is configured).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from distributed.security import Security
from pydantic import BaseModel, Field, SecretStr

VALID_DAYS = 365


class DaskTls(BaseModel):
    """What a client needs to reach a TLS-only regional scheduler.

    Each field holds a file path or the PEM text itself (distributed accepts both).
    """

    ca: str = Field(description="CA certificate (path or PEM).")
    cert: str = Field(description="Client certificate (path or PEM).")
    key: SecretStr = Field(description="Client private key (path or PEM).")

    def security(self) -> Security:
        """The Security object for a client connection (encryption required)."""
        return Security(
            require_encryption=True,
            tls_ca_file=self.ca,
            tls_client_cert=self.cert,
            tls_client_key=self.key.get_secret_value(),
        )


class TlsFiles(BaseModel):
    """The files of one stack's certificate authority."""

    directory: Path

    @property
    def ca(self) -> Path:
        """The CA certificate."""
        return self.directory / "ca.pem"

    def cert(self, name: str) -> Path:
        """Certificate of ``name`` (a region's cluster, or ``client``)."""
        return self.directory / f"{name}.pem"

    def key(self, name: str) -> Path:
        """Private key of ``name``."""
        return self.directory / f"{name}-key.pem"

    def client(self) -> DaskTls:
        """The client credentials (paths)."""
        return DaskTls(
            ca=str(self.ca), cert=str(self.cert("client")), key=SecretStr(str(self.key("client")))
        )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Proxima"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_bytes(pem)
    tmp.replace(path)


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    hosts: list[str],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    is_ca = issuer is None
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer or _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if not is_ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def ensure_certificates(directory: Path, members: dict[str, list[str]]) -> TlsFiles:
    """Create the CA (once) and a certificate for every member that lacks one.

    Args:
        directory: Where the PEM files live (created with mode 0700).
        members: Certificate name → host names/IPs it serves (``client`` is added).

    Returns:
        The file layout.
    """
    files = TlsFiles(directory=directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_key_path = directory / "ca-key.pem"
    if not (files.ca.exists() and ca_key_path.exists()):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _issue("Proxima Dask CA", ca_key, ca_key, None, [])
        _write_key(ca_key_path, ca_key)
        files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    ca_key_loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    assert isinstance(ca_key_loaded, ec.EllipticCurvePrivateKey)
    ca_subject = x509.load_pem_x509_certificate(files.ca.read_bytes()).subject
    for name, hosts in {"client": [], **members}.items():
        if files.cert(name).exists() and files.key(name).exists():
            continue
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(f"proxima-{name}", key, ca_key_loaded, ca_subject, hosts)
        _write_key(files.key(name), key)
        files.cert(name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


# --- AWS: certificates travel as one Secrets Manager secret per member -------------

SECRET_FILES = ("ca.pem", "cert.pem", "key.pem")


def secret_text(files: TlsFiles, member: str) -> str:
    """The JSON secret (``ca``, ``cert``, ``key`` as PEM text) of one member, as stored
    in Secrets Manager for the ECS tasks (``cluster``) or the flow runs (``client``).
    """
    return json.dumps(
        {
            "ca": files.ca.read_text(),
            "cert": files.cert(member).read_text(),
            "key": files.key(member).read_text(),
        }
    )


def materialize(secret: str, directory: Path) -> DaskTls:
    """Write a member's secret as the files ``dask scheduler``/``dask worker`` take
    (``--tls-ca-file``, ``--tls-cert``, ``--tls-key``); the key is readable by its owner only.

    Raises:
        ValueError: The secret is not the JSON ``secret_text`` writes.
    """
    try:
        parts = json.loads(secret)
        pems = [parts["ca"], parts["cert"], parts["key"]]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"the Dask TLS secret must be JSON with ca, cert and key: {exc}") from exc
    if not all(isinstance(p, str) and "-----BEGIN" in p for p in pems):
        raise ValueError("the Dask TLS secret's ca, cert and key must be PEM text")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = [directory / name for name in SECRET_FILES]
    for path, pem in zip(paths, pems, strict=True):
        path.touch(mode=0o600)
        path.write_text(pem)
    return DaskTls(ca=str(paths[0]), cert=str(paths[1]), key=SecretStr(str(paths[2])))


def main(argv: list[str] | None = None) -> int:
    """``python -m proxima.dask_tls materialize DIR``: an ECS task's first step, from
    the secret ECS puts in ``PROXIMA_DASK_TLS``.
    """
    from proxima.settings import get_settings

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "materialize":
        print("usage: python -m proxima.dask_tls materialize DIR", file=sys.stderr)
        return 2
    secret = get_settings().dask_tls
    if secret is None:
        print("PROXIMA_DASK_TLS is not set: the task has no Dask TLS secret", file=sys.stderr)
        return 1
    try:
        materialize(secret.get_secret_value(), Path(args[1]))
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
