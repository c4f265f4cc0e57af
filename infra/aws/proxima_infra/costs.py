"""What the synthesized stacks cost at list prices (infra/aws/prices.yaml): every billed
resource summed from the templates, not written by hand, so the table in docs/aws.md
changes when the stacks do (tests/test_aws_infra.py compares them).

    python infra/aws/proxima_infra/costs.py     # the table, both profiles
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PRICES = Path(__file__).resolve().parents[1] / "prices.yaml"
USER_SECRETS_PER_DATA_REGION = 2  # <project>/dask-tls and <project>/prefect-api
USER_SECRETS_CLIENT = 1  # <project>/prefect-api


@dataclass(frozen=True)
class Line:
    """One billed item of one stack, per month while deployed and idle."""

    item: str
    stack: str
    monthly: float


def _by_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def _ref(value: Any) -> str:
    return str(value["Ref"]) if isinstance(value, dict) and "Ref" in value else ""


def hosts_for(tasks: list[tuple[int, int]], capacity: dict[str, int]) -> int:
    """EC2 hosts that ECS needs for ``tasks`` (CPU units, MiB), packed first-fit by size."""
    free: list[list[int]] = []
    for cpu, memory in sorted(tasks, reverse=True):
        for host in free:
            if host[0] >= cpu and host[1] >= memory:
                host[0] -= cpu
                host[1] -= memory
                break
        else:
            free.append([capacity["cpu"] - cpu, capacity["memory"] - memory])
    return len(free)


def _task_size(definition: dict[str, Any]) -> tuple[int, int]:
    props = definition["Properties"]
    if props.get("Cpu"):
        return int(props["Cpu"]), int(props["Memory"])
    containers = props["ContainerDefinitions"]
    return (
        sum(int(c.get("Cpu", 0)) for c in containers),
        sum(int(c.get("Memory") or c.get("MemoryReservation") or 0) for c in containers),
    )


def _opensearch(stack: str, domain: dict[str, Any], p: dict[str, Any], h: float) -> list[Line]:
    cluster, ebs = domain["Properties"]["ClusterConfig"], domain["Properties"]["EBSOptions"]
    count = int(cluster["InstanceCount"])
    out = [
        Line(
            f"OpenSearch {count} × {cluster['InstanceType']}",
            stack,
            count * p["hourly"]["opensearch"][cluster["InstanceType"]] * h,
        ),
        Line(
            f"OpenSearch {count} × {ebs['VolumeSize']} GB gp3",
            stack,
            count * int(ebs["VolumeSize"]) * p["monthly"]["opensearch_gp3_gb"],
        ),
    ]
    if cluster.get("DedicatedMasterEnabled"):
        masters = int(cluster["DedicatedMasterCount"])
        kind = cluster["DedicatedMasterType"]
        out.append(
            Line(
                f"OpenSearch {masters} × {kind} masters",
                stack,
                masters * p["hourly"]["opensearch"][kind] * h,
            )
        )
    return out


def _scaled_to(template: dict[str, Any], service_id: str) -> int | None:
    """The most tasks Application Auto Scaling may give the service (None: not scaled)."""
    for target in _by_type(template, "AWS::ApplicationAutoScaling::ScalableTarget").values():
        if service_id in str(target["Properties"].get("ResourceId")):
            return int(target["Properties"]["MaxCapacity"])
    return None


def _ecs(
    stack: str, template: dict[str, Any], p: dict[str, Any], h: float, busy: bool = False
) -> list[Line]:
    """The ECS services' cost: idle (their desired counts), or ``busy`` (every scaled
    service at its maximum, as while analyses run).
    """
    definitions = _by_type(template, "AWS::ECS::TaskDefinition")
    out: list[Line] = []
    on_hosts: list[tuple[int, int]] = []
    for service_id, service in _by_type(template, "AWS::ECS::Service").items():
        props = service["Properties"]
        size = _task_size(definitions[_ref(props["TaskDefinition"])])
        count = int(props.get("DesiredCount", 1))
        if busy:
            count = _scaled_to(template, service_id) or count
        if props.get("LaunchType") == "FARGATE":
            per_task = size[0] / 1024 * p["hourly"]["fargate_vcpu"]
            per_task += size[1] / 1024 * p["hourly"]["fargate_gb"]
            name = re.sub(r"(Task)?[0-9A-F]{8}$", "", _ref(props["TaskDefinition"]))
            label = f"Fargate {count} × {name} ({size[0] / 1024:g} vCPU, {size[1] / 1024:g} GB)"
            out.append(Line(label, stack, count * per_task * h))
        else:
            on_hosts += [size] * count
    for group in _by_type(template, "AWS::AutoScaling::AutoScalingGroup").values():
        props = group["Properties"]
        launch = template["Resources"][_ref(props["LaunchTemplate"]["LaunchTemplateId"])]
        data = launch["Properties"]["LaunchTemplateData"]
        kind = data["InstanceType"]
        hosts = max(int(props["MinSize"]), hosts_for(on_hosts, p["ec2_capacity"][kind]))
        disk = sum(int(b["Ebs"]["VolumeSize"]) for b in data.get("BlockDeviceMappings", []))
        out.append(
            Line(
                f"EC2 {hosts} × {kind} (Dask: {len(on_hosts)} worker tasks)",
                stack,
                hosts * p["hourly"]["ec2"][kind] * h,
            )
        )
        out.append(
            Line(
                f"EBS {hosts} × {disk} GB gp3",
                stack,
                hosts * disk * p["monthly"]["ebs_gp3_gb"] * h / p["hours_per_month"],
            )
        )
    return out


def lines(templates: dict[str, tuple[str, dict[str, Any]]], prices: dict[str, Any]) -> list[Line]:
    """Every billed item of ``templates`` ({stack: (region, template)}) at ``prices``."""
    h = float(prices["hours_per_month"])
    out: list[Line] = []
    data_regions = 0
    for stack, (_, template) in sorted(templates.items()):
        data_regions += bool(_by_type(template, "AWS::FSx::FileSystem"))
        for domain in _by_type(template, "AWS::OpenSearchService::Domain").values():
            out += _opensearch(stack, domain, prices, h)
        nat = len(_by_type(template, "AWS::EC2::NatGateway"))
        if nat:
            hourly = prices["hourly"]["nat_gateway"] + prices["hourly"]["public_ipv4"]
            out.append(Line(f"NAT gateway {nat} × (with its IPv4)", stack, nat * hourly * h))
        for lustre in _by_type(template, "AWS::FSx::FileSystem").values():
            gib = int(lustre["Properties"]["StorageCapacity"])
            price = prices["monthly"]["fsx_lustre_persistent2_125_gb"]
            out.append(Line(f"FSx for Lustre {gib} GiB PERSISTENT_2", stack, gib * price))
        out += _ecs(stack, template, prices, h)
        for instance in _by_type(template, "AWS::EC2::Instance").values():
            props = instance["Properties"]
            kind = props["InstanceType"]
            disk = sum(int(b["Ebs"]["VolumeSize"]) for b in props.get("BlockDeviceMappings", []))
            out.append(
                Line(f"EC2 1 × {kind} (workstation)", stack, prices["hourly"]["ec2"][kind] * h)
            )
            out.append(Line(f"EBS {disk} GB gp3", stack, disk * prices["monthly"]["ebs_gp3_gb"]))
        made = len(_by_type(template, "AWS::SecretsManager::Secret"))
        if made:
            out.append(Line(f"Secrets {made}", stack, made * prices["monthly"]["secret"]))
    users = USER_SECRETS_CLIENT + USER_SECRETS_PER_DATA_REGION * data_regions
    out.append(Line(f"Secrets you store ({users})", "-", users * prices["monthly"]["secret"]))
    return out


def busy_hourly(templates: dict[str, tuple[str, dict[str, Any]]], prices: dict[str, Any]) -> float:
    """What an hour with every region's workers up costs beyond an idle hour."""
    extra = 0.0
    for stack, (_, template) in templates.items():
        idle = _ecs(stack, template, prices, 1.0)
        busy = _ecs(stack, template, prices, 1.0, busy=True)
        extra += sum(x.monthly for x in busy) - sum(x.monthly for x in idle)
    return extra


def table(profiles: dict[str, dict[str, tuple[str, dict[str, Any]]]]) -> str:
    """docs/aws.md's table: every item per profile, the idle totals and what an hour of
    analysis (every region's workers up) adds.
    """
    prices = yaml.safe_load(PRICES.read_text())
    per = {name: lines(t, prices) for name, t in profiles.items()}
    rows = ["| stack | " + " | ".join(profiles) + " |", "| --- |" + " --- |" * len(profiles)]
    stacks = sorted({line.stack for ls in per.values() for line in ls})
    for stack in stacks:
        cells = []
        for ls in per.values():
            mine = [line for line in ls if line.stack == stack]
            cells.append("; ".join(f"{x.item} ${x.monthly:,.0f}" for x in mine) or "—")
        rows.append(f"| {stack} | " + " | ".join(cells) + " |")
    totals = [f"**${math.fsum(x.monthly for x in ls):,.0f}/month**" for ls in per.values()]
    rows.append("| **idle total** | " + " | ".join(totals) + " |")
    hourly = [f"**${busy_hourly(t, prices):,.2f}/hour**" for t in profiles.values()]
    rows.append("| **an hour of analysis, beyond idle** | " + " | ".join(hourly) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    import os
    import sys
    import tempfile

    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import app as infra_app
    from aws_cdk import Stack
    from aws_cdk.assertions import Template

    from proxima_infra.config import InfraConfig, load

    profiles = {}
    for profile in ("minimal", "production"):
        cfg = InfraConfig.model_validate(load().model_dump() | {"profile": profile})
        built = infra_app.build(cfg, outdir=tempfile.mkdtemp())
        profiles[profile] = {
            s.stack_name: (s.region, Template.from_stack(s).to_json())
            for s in built.node.children
            if isinstance(s, Stack)
        }
    print(table(profiles))
