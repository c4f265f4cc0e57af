"""The multi-region testbed: each data region in its own network namespace, joined to
the client side by a bandwidth-limited link whose bytes the kernel counts.

Topology (needs root; `tc` has tbf but no netem here, so links are rate-limited, not
delayed):

    client side (root namespace)              region namespaces
    bridge pxbr0 10.77.0.1/24 ── veth pxv0h ═══ pxv0n 10.77.0.10  (us-east-1: Dask, S3)
                               └─ veth pxv1h ═══ pxv1n 10.77.0.11  (us-west-2: Dask, S3)

The Prefect server and OpenSearch listen on 10.77.0.1; regions reach them only
through their links. Every byte a region sends or receives crosses its veth, whose
counters (/sys/class/net/pxv<i>h/statistics) are read before and after a run.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from proxima.config import StackConfig
from proxima.errors import ProximaError

BRIDGE = "pxbr0"
SUBNET = "10.77.0"
CLIENT_IP = f"{SUBNET}.1"


class TestbedError(ProximaError):
    """The testbed could not be built or torn down."""


@dataclass(frozen=True)
class Link:
    """One region's link to the client side."""

    region: str
    netns: str
    host_if: str
    ns_if: str
    address: str


def links(config: StackConfig) -> list[Link]:
    """The links the configuration asks for (regions that name a netns)."""
    out = []
    for i, region in enumerate(r for r in config.regions if r.netns):
        assert region.netns is not None
        out.append(Link(region.name, region.netns, f"pxv{i}h", f"pxv{i}n", region.host))
    return out


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise TestbedError(f"`{' '.join(argv)}` failed: {proc.stderr.strip() or proc.stdout}")
    return proc


def _tbf(dev: str, rate_mbit: float, netns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    burst = max(int(rate_mbit * 1e6 / 8 / 250), 16 * 1024)  # ~4 ms of traffic, >= 16 KiB
    _run(
        *prefix,
        "tc",
        "qdisc",
        "replace",
        "dev",
        dev,
        "root",
        "tbf",
        "rate",
        f"{rate_mbit}mbit",
        "burst",
        str(burst),
        "latency",
        "200ms",
    )


def up(config: StackConfig, rate_mbit: float = 100.0) -> list[Link]:
    """Create the bridge, one namespace and one shaped veth link per region (idempotent)."""
    if _run("id", "-u").stdout.strip() != "0":
        raise TestbedError("the testbed needs root (network namespaces, veth, tc)")
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{CLIENT_IP}/24", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")
    existing = set(_run("ip", "netns", "list").stdout.split())
    made = links(config)
    for link in made:
        if link.netns not in existing:
            _run("ip", "netns", "add", link.netns)
        if not Path(f"/sys/class/net/{link.host_if}").exists():
            _run("ip", "link", "add", link.host_if, "type", "veth", "peer", "name", link.ns_if)
            _run("ip", "link", "set", link.ns_if, "netns", link.netns)
            _run("ip", "link", "set", link.host_if, "master", BRIDGE)
            ns = ("ip", "netns", "exec", link.netns)
            _run(*ns, "ip", "addr", "add", f"{link.address}/24", "dev", link.ns_if)
            _run(*ns, "ip", "link", "set", "lo", "up")
            _run(*ns, "ip", "link", "set", link.ns_if, "up")
            _run(*ns, "ip", "route", "replace", "default", "via", CLIENT_IP)
        _run("ip", "link", "set", link.host_if, "up")
        _tbf(link.host_if, rate_mbit)  # client → region
        _tbf(link.ns_if, rate_mbit, link.netns)  # region → client
    return made


def down(config: StackConfig) -> None:
    """Kill what runs in the namespaces, delete them, their links and the bridge."""
    for link in links(config):
        pids = _run("ip", "netns", "pids", link.netns, check=False).stdout.split()
        for pid in pids:
            _run("kill", "-9", pid, check=False)
        _run("ip", "netns", "del", link.netns, check=False)
        _run("ip", "link", "del", link.host_if, check=False)
    _run("ip", "link", "del", BRIDGE, check=False)


def leftovers(config: StackConfig) -> list[str]:
    """Namespaces, links or processes of the testbed that still exist."""
    found = []
    names = set(_run("ip", "netns", "list", check=False).stdout.split())
    for link in links(config):
        if link.netns in names:
            found.append(f"netns {link.netns}")
            pids = _run("ip", "netns", "pids", link.netns, check=False).stdout.split()
            found += [f"pid {p} in {link.netns}" for p in pids]
        if Path(f"/sys/class/net/{link.host_if}").exists():
            found.append(f"link {link.host_if}")
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        found.append(f"bridge {BRIDGE}")
    return found


def counters(config: StackConfig) -> dict[str, dict[str, int]]:
    """Bytes on each region's link: to_region (client → region) and from_region."""
    out = {}
    for link in links(config):
        stats = Path(f"/sys/class/net/{link.host_if}/statistics")
        out[link.region] = {
            "to_region": int((stats / "tx_bytes").read_text()),
            "from_region": int((stats / "rx_bytes").read_text()),
        }
    return out


def delta(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    """Per-link byte differences between two counter readings."""
    return {
        region: {k: after[region][k] - before[region][k] for k in after[region]} for region in after
    }
