"""The regions' local S3 endpoints: S3Proxy (Maven Central) on its filesystem blob store.

Objects live as files under ``<state>/s3/<region>/``, so a region's data repository
survives `stack down`/`up` as real S3 does (an in-memory server lost every bucket).
"""

from __future__ import annotations

from pathlib import Path

from proxima.config import RegionConfig
from proxima.errors import StackError
from proxima.settings import PROJECT_ROOT, ProximaSettings

JAR = PROJECT_ROOT / "infra" / "local" / "s3proxy" / "target" / "s3proxy.jar"
# The blob store streams objects; a small heap is plenty and leaves memory to the workers.
HEAP = "-Xmx192m"


def data_dir(region: str, settings: ProximaSettings) -> Path:
    """Where the region's buckets are kept (one directory per bucket)."""
    return settings.state_dir / "s3" / region


def require_jar() -> None:
    """Raise a StackError saying what to run when the S3Proxy jar has not been fetched."""
    if not JAR.exists():
        raise StackError(f"{JAR} is missing: run `make install` (it fetches S3Proxy with Maven)")


def argv(region: RegionConfig, settings: ProximaSettings) -> list[str]:
    """The S3Proxy command line for ``region``; writes its properties file first."""
    require_jar()
    root = data_dir(region.name, settings)
    root.mkdir(parents=True, exist_ok=True)
    properties = root.parent / f"{region.name}.properties"
    properties.write_text(
        f"s3proxy.endpoint=http://{region.host}:{region.s3_port}\n"
        # Local credentials are fixed and public (proxima.s3.LOCAL_CREDENTIALS); the
        # endpoint listens on the stack's host only.
        "s3proxy.authorization=none\n"
        "jclouds.provider=filesystem\n"
        f"jclouds.filesystem.basedir={root}\n"
    )
    return [settings.java, HEAP, "-jar", str(JAR), "--properties", str(properties)]
