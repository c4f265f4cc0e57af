"""Build and launch the embedded OpenSearch 2.19 node (Maven Central artifacts, Java 17)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from proxima.config import OpenSearchService
from proxima.errors import StackError
from proxima.settings import PROJECT_ROOT, ProximaSettings

LAUNCHER_DIR = PROJECT_ROOT / "infra" / "local" / "opensearch"
MIN_JAVA = 17

# Flags copied from the distribution's jvm.options that matter outside it.
JVM_FLAGS = [
    "-Djava.locale.providers=SPI,COMPAT",
    "-Dfile.encoding=UTF-8",
    "-Djava.awt.headless=true",
    "-Dio.netty.noUnsafe=true",
    "-Dio.netty.recycler.maxCapacityPerThread=0",
    "-Dlog4j2.formatMsgNoLookups=true",
    "-XX:+UseG1GC",
]


def java_major(java: str) -> int:
    """Return the major version of ``java``, or raise a StackError saying what to install."""
    if not shutil.which(java):
        raise StackError(
            f"Java not found ({java!r}). OpenSearch 2.19 needs Java {MIN_JAVA}+: "
            "install openjdk-17-jre-headless or set PROXIMA_JAVA."
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise StackError(f"cannot read the Java version from `{java} -version`: {out.stderr!r}")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise StackError(
            f"Java {major} found at {java!r}; OpenSearch 2.19 needs Java {MIN_JAVA} or newer. "
            "Install openjdk-17-jre-headless or point PROXIMA_JAVA at a newer java."
        )
    return major


def classpath(settings: ProximaSettings) -> str:
    """Compile the launcher and resolve its jars once; later calls need no network.

    Raises:
        StackError: Maven is missing or cannot resolve the artifacts.
    """
    target = LAUNCHER_DIR / "target"
    classes, lib = target / "classes", target / "lib"
    launcher_class = classes / "proxima" / "opensearch" / "Launcher.class"
    source = LAUNCHER_DIR / "src" / "main" / "java" / "proxima" / "opensearch" / "Launcher.java"
    fresh = launcher_class.exists() and launcher_class.stat().st_mtime >= source.stat().st_mtime
    if not (fresh and any(lib.glob("opensearch-2.19.*.jar"))):
        if not shutil.which(settings.maven):
            raise StackError(
                f"Maven ({settings.maven!r}) not found; it resolves OpenSearch from Maven "
                "Central. Install maven or set PROXIMA_MAVEN."
            )
        log = settings.logs_dir / "opensearch-build.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            result = subprocess.run(
                [settings.maven, "-B", "-q", "-f", str(LAUNCHER_DIR / "pom.xml"), "package"],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise StackError(
                "Maven could not resolve or build the OpenSearch launcher "
                f"(exit {result.returncode}; full log {log}). Check access to Maven Central "
                f"or a mirror in ~/.m2/settings.xml.\n{tail}"
            )
    return f"{classes}:{lib}/*"


def argv(service: OpenSearchService, settings: ProximaSettings) -> list[str]:
    """The command line that runs one node with its data under the state directory."""
    home = settings.state_dir / "opensearch"
    home.mkdir(parents=True, exist_ok=True)
    heap = service.heap
    return [
        settings.java,
        f"-Xms{'512m' if heap.endswith('g') else heap}",
        f"-Xmx{heap}",
        *JVM_FLAGS,
        "-cp",
        classpath(settings),
        "proxima.opensearch.Launcher",
        str(home),
        str(service.port),
        str(service.transport_port),
        service.host,
    ]


def home(settings: ProximaSettings) -> Path:
    """The node's home (data and logs)."""
    return settings.state_dir / "opensearch"
