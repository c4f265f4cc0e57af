"""infra/aws: the CDK app synthesizes offline; each stack has what the design needs;
cdk-nag AwsSolutions has no unsuppressed finding and no suppression is unused."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infra" / "aws"))

import app as infra_app
from aws_cdk import Stack
from aws_cdk.assertions import Annotations, Match, Template
from proxima_infra.config import load
from proxima_infra.suppressions import SUPPRESSIONS

from tests import iam

OPEN = ("0.0.0.0/0", "::/0")
GUARDED_PORTS = {443, 8786, 8787, 988}


def _stacks(app):
    return {s.stack_name: s for s in app.node.children if isinstance(s, Stack)}


@pytest.fixture(scope="module")
def synth():
    stacks = iam.stacks()  # synthesized once per session, shared with test_aws_iam
    return stacks, {name: Template.from_stack(s) for name, s in stacks.items()}


def test_client_stack(synth):
    _, t = synth
    client = t["proxima-client"]
    client.resource_count_is("AWS::OpenSearchService::Domain", 1)
    client.has_resource_properties(
        "AWS::OpenSearchService::Domain",
        {
            "EncryptionAtRestOptions": {"Enabled": True},
            "NodeToNodeEncryptionOptions": {"Enabled": True},
            "DomainEndpointOptions": Match.object_like({"EnforceHTTPS": True}),
            "AdvancedSecurityOptions": Match.object_like({"Enabled": True}),
            "VPCOptions": Match.any_value(),
        },
    )
    for bucket in client.find_resources("AWS::S3::Bucket").values():
        assert bucket["Properties"]["BucketEncryption"]
        assert bucket["Properties"]["PublicAccessBlockConfiguration"]["BlockPublicAcls"]
    policies = client.find_resources("AWS::S3::BucketPolicy")
    assert all("aws:SecureTransport" in str(p) for p in policies.values()) and policies
    outputs = client.find_outputs("*")
    for name in (
        "OpenSearchEndpoint",
        "ResultsBucket",
        "CatalogReplicas",
        "ClientVpcId",
        "AnalystRoleArn",
        "RefreshRoleArn",
    ):
        assert name in outputs


@pytest.mark.parametrize("region", [r.region for r in load().data_regions])
def test_data_region_stack(synth, region):
    _, t = synth
    cfg = next(r for r in load().data_regions if r.region == region)
    data = t[f"proxima-data-{region}"]
    data.has_resource_properties(
        "AWS::FSx::FileSystem",
        {
            "FileSystemType": "LUSTRE",
            "LustreConfiguration": Match.object_like({"DeploymentType": "PERSISTENT_2"}),
        },
    )
    data.resource_count_is("AWS::FSx::DataRepositoryAssociation", len(cfg.buckets))
    data.has_resource_properties(
        "AWS::FSx::DataRepositoryAssociation", {"DataRepositoryPath": f"s3://{cfg.buckets[0]}"}
    )
    # one import path, the refresh flow's: no schedule, no auto-import events
    data.resource_count_is("AWS::Scheduler::Schedule", 0)
    for dra in data.find_resources("AWS::FSx::DataRepositoryAssociation").values():
        assert "S3" not in dra["Properties"]
    data.resource_count_is("AWS::ECS::Service", 2)
    # accounts created since 2024-10-01 cannot create launch configurations
    data.resource_count_is("AWS::AutoScaling::LaunchConfiguration", 0)
    data.has_resource_properties(
        "AWS::EC2::LaunchTemplate",
        {
            "LaunchTemplateData": Match.object_like(
                {"MetadataOptions": Match.object_like({"HttpTokens": "required"})}
            )
        },
    )
    user_data = str(data.find_resources("AWS::EC2::LaunchTemplate"))
    for step in ("set -euo pipefail", "lustre defaults", "_netdev", "mountpoint -q"):
        assert step in user_data, step  # a failed mount fails the host, fstab remounts
    lustre_fs = next(iter(data.find_resources("AWS::FSx::FileSystem").values()))
    lustre_subnet = lustre_fs["Properties"]["SubnetIds"][0]["Ref"]
    for service in data.find_resources("AWS::ECS::Service").values():
        props = service["Properties"]
        breaker = props["DeploymentConfiguration"]["DeploymentCircuitBreaker"]
        assert breaker == {"Enable": True, "Rollback": True}
        # the workers on the hosts' capacity provider (they mount /fsx); the scheduler,
        # which reads no data, on Fargate
        on_hosts = bool(props.get("CapacityProviderStrategy"))
        assert on_hosts != (props.get("LaunchType") == "FARGATE"), props
        subnets = props["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"]
        assert subnets == [{"Ref": lustre_subnet}], "tasks next to the file system"
    lustre = next(iter(data.find_resources("AWS::FSx::FileSystem").values()))
    asg = next(iter(data.find_resources("AWS::AutoScaling::AutoScalingGroup").values()))
    assert asg["Properties"]["VPCZoneIdentifier"] == lustre["Properties"]["SubnetIds"]
    outputs = data.find_outputs("*")
    for name in ("SchedulerAddress", "FsxMount", "FsxFileSystemId", "DashboardUrl", "Workers"):
        assert name in outputs
    assert outputs["SchedulerAddress"]["Value"].startswith("tls://")


def _ingress_rules(template):
    for res in template.to_json()["Resources"].values():
        if res["Type"] == "AWS::EC2::SecurityGroup":
            yield from res["Properties"].get("SecurityGroupIngress", [])
        elif res["Type"] == "AWS::EC2::SecurityGroupIngress":
            yield res["Properties"]


def test_the_client_side_of_each_peering_is_wired_by_its_data_region_stack(synth):
    _, t = synth
    data = t["proxima-data-us-east-1"]
    calls = [
        json.loads(iam.resolve(r["Properties"]["Create"], {}))
        for r in data.find_resources("Custom::AWS").values()
    ]
    actions = sorted(c["action"] for c in calls)
    assert actions == [
        "associateVPCWithHostedZone",
        "createRoute",
        "createRoute",
    ]
    assert all(c["region"] == "us-east-1" for c in calls)  # the client region
    routes = [c for c in calls if c["action"] == "createRoute"]
    assert all(r["parameters"]["DestinationCidrBlock"] == "10.1.0.0/16" for r in routes)
    outputs = t["proxima-client"].find_outputs("*")
    assert "ClientRouteTableIds" in outputs and "CatalogDomainArn" in outputs


def test_lustre_traffic_is_allowed_both_ways_between_servers_and_hosts(synth):
    _, t = synth
    data = t["proxima-data-us-east-1"].to_json()["Resources"]
    groups = {k: v for k, v in data.items() if v["Type"] == "AWS::EC2::SecurityGroup"}
    fsx = next(k for k, v in groups.items() if "FSx" in v["Properties"]["GroupDescription"])
    dask = next(k for k, v in groups.items() if "Dask" in v["Properties"]["GroupDescription"])

    def rules(kind: str, group: str, peer_key: str, peer: str) -> set[int]:
        ports = set()
        for res in data.values():
            props = res.get("Properties", {})
            owner = props.get("GroupId", {}).get("Fn::GetAtt", [""])[0]
            other = props.get(peer_key, {}).get("Fn::GetAtt", [""])[0]
            if res["Type"] == kind and (owner, other) == (group, peer):
                ports |= set(range(props["FromPort"], props["ToPort"] + 1))
        return ports

    lustre = {988, *range(1018, 1024)}
    assert lustre <= rules("AWS::EC2::SecurityGroupIngress", fsx, "SourceSecurityGroupId", dask)
    assert lustre <= rules("AWS::EC2::SecurityGroupEgress", fsx, "DestinationSecurityGroupId", dask)
    assert lustre <= rules("AWS::EC2::SecurityGroupIngress", dask, "SourceSecurityGroupId", fsx)


def test_no_open_ingress_on_dask_search_or_lustre_ports(synth):
    _, t = synth
    for name, template in t.items():
        for rule in _ingress_rules(template):
            cidr = rule.get("CidrIp") or rule.get("CidrIpv6")
            lo, hi = rule.get("FromPort", 0), rule.get("ToPort", 65535)
            touches = any(lo <= p <= hi for p in GUARDED_PORTS)
            assert not (cidr in OPEN and touches), (name, rule)


def test_cdk_nag_is_clean_with_justified_suppressions(synth):
    stacks, _ = synth
    for name, stack in stacks.items():
        ann = Annotations.from_stack(stack)
        errors = ann.find_error("*", Match.string_like_regexp("AwsSolutions-.*"))
        warnings = ann.find_warning("*", Match.string_like_regexp("AwsSolutions-.*"))
        assert not errors and not warnings, (name, [e.entry.data for e in errors + warnings])


def test_every_suppression_is_needed(tmp_path):
    app = infra_app.build(outdir=str(tmp_path), suppressions={})
    # cdk.json's @aws-cdk/core:annotationsInValidationReport turns unsuppressed
    # findings into a failed synthesis whose report lists each with its construct path
    with pytest.raises(RuntimeError, match="ValidationFailed") as failed:
        app.synth()
    findings = set(
        re.findall(r"(?:ERROR|WARNING) (AwsSolutions-[A-Z0-9]+)[^\n]*\n\s+(\S+)", str(failed.value))
    )
    unused = []
    for stack in _stacks(app):
        for path, rules in SUPPRESSIONS.items():
            where = f"{stack}/{path}"
            if not any(c.node.path == where for c in _stacks(app)[stack].node.find_all()):
                continue  # a client-stack path in a data stack, or the reverse
            for rule in rules:
                if not any(
                    r == rule and (p == where or p.startswith(f"{where}/")) for r, p in findings
                ):
                    unused.append((where, rule))
    assert not unused, f"suppressions that no finding needs: {unused}"
    assert all(len(reason) > 60 for rules in SUPPRESSIONS.values() for reason in rules.values())


def test_the_minimal_profile_costs_nothing_it_need_not(synth):
    _, t = synth
    data = t["proxima-data-us-east-1"]
    lustre = next(iter(data.find_resources("AWS::FSx::FileSystem").values()))
    assert lustre["DeletionPolicy"] == "Delete"  # a cache of the buckets, not data
    data.has_resource_properties("AWS::AutoScaling::AutoScalingGroup", {"MinSize": "0"})
    for template in t.values():
        template.resource_count_is("AWS::EC2::NatGateway", 1)
        template.has_resource_properties("AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway"})
    t["proxima-client"].has_resource_properties(
        "AWS::OpenSearchService::Domain",
        {
            "ClusterConfig": Match.object_like(
                {"DedicatedMasterEnabled": False, "InstanceCount": 1}
            ),
            "EBSOptions": Match.object_like({"VolumeType": "gp3"}),
        },
    )


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    """The production profile's app, synthesized (unsuppressed cdk-nag findings would
    fail it)."""
    from proxima_infra.config import InfraConfig

    raw = load().model_dump() | {"profile": "production"}
    app = infra_app.build(InfraConfig.model_validate(raw), outdir=str(tmp_path_factory.mktemp("p")))
    app.synth()
    return _stacks(app)


def test_the_production_profile_synthesizes_clean_with_dedicated_masters(production):
    stacks = production
    client = Template.from_stack(stacks["proxima-client"])
    client.has_resource_properties(
        "AWS::OpenSearchService::Domain",
        {
            "ClusterConfig": Match.object_like(
                {"DedicatedMasterCount": 3, "InstanceCount": 2, "ZoneAwarenessEnabled": True}
            )
        },
    )
    data = Template.from_stack(stacks["proxima-data-us-east-1"])
    data.has_resource_properties("AWS::AutoScaling::AutoScalingGroup", {"MinSize": "1"})


def test_overlapping_cidrs_are_refused():
    from proxima_infra.config import InfraConfig

    raw = load().model_dump()
    raw["data_regions"][1]["cidr"] = raw["data_regions"][0]["cidr"]
    with pytest.raises(ValueError, match="overlap"):
        InfraConfig.model_validate(raw)


def test_the_image_asset_holds_what_the_dockerfile_copies_and_nothing_local(synth):
    stacks, t = synth
    outdir = Path(next(iter(stacks.values())).node.root.outdir)
    dockerfile = Path(__file__).resolve().parents[1] / "infra" / "aws" / "Dockerfile"
    copied = [
        source
        for line in dockerfile.read_text().splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    ]
    images = [p for p in outdir.glob("asset.*") if (p / "infra" / "aws" / "Dockerfile").exists()]
    assert len(images) == 1, "one image for every task: the same code everywhere"
    for source in copied:
        assert (images[0] / source).exists(), source
    assert not [p.name for p in images[0].iterdir() if p.name.startswith(".")]
    assert not (images[0] / "tests").exists()
    # every task definition runs that image (pulled from the stacks' ECR repository)
    for template in t.values():
        for td in template.find_resources("AWS::ECS::TaskDefinition").values():
            for container in td["Properties"]["ContainerDefinitions"]:
                assert "container-assets" in str(container["Image"]), container["Name"]


# What would stop `cdk deploy` in a fresh account (issue 32, 1-4): each test fails
# without its fix.


def _client_without_the_service_role(tmp_path):
    from proxima_infra.config import InfraConfig

    raw = load().model_dump()
    raw["client"]["create_opensearch_service_role"] = False
    app = infra_app.build(InfraConfig.model_validate(raw), outdir=str(tmp_path))
    return Template.from_stack(_stacks(app)["proxima-client"])


def test_the_catalog_domain_has_opensearchs_service_linked_role_or_a_stated_opt_out(
    synth, tmp_path
):
    _, t = synth
    client = t["proxima-client"]
    roles = client.find_resources(
        "AWS::IAM::ServiceLinkedRole",
        {"Properties": {"AWSServiceName": "opensearchservice.amazonaws.com"}},
    )
    assert len(roles) == 1  # a VPC domain is refused in an account without it
    (domain,) = client.find_resources("AWS::OpenSearchService::Domain").values()
    assert set(roles) <= set(domain["DependsOn"])
    # an account that has the role already says so: creating it twice fails
    without = _client_without_the_service_role(tmp_path)
    without.resource_count_is("AWS::IAM::ServiceLinkedRole", 0)


def _statements(template, logical_id_part: str) -> list[dict]:
    return [
        statement
        for logical_id, policy in template.find_resources("AWS::IAM::Policy").items()
        if logical_id_part in logical_id
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statements: list[dict]) -> set[str]:
    return {
        a
        for s in statements
        if s["Effect"] == "Allow"
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }


@pytest.mark.parametrize("region", [r.region for r in load().data_regions])
def test_the_zone_association_may_describe_the_vpc_it_associates(synth, region):
    _, t = synth
    actions = _actions(_statements(t[f"proxima-data-{region}"], "AssociateZone"))
    assert {"route53:AssociateVPCWithHostedZone", "ec2:DescribeVpcs"} <= actions


@pytest.mark.parametrize("region", [r.region for r in load().data_regions])
def test_a_same_account_peering_is_not_accepted_again(synth, region):
    _, t = synth
    data = t[f"proxima-data-{region}"]
    data.resource_count_is("AWS::EC2::VPCPeeringConnection", 1)
    body = json.dumps(data.to_json())
    assert "acceptVpcPeeringConnection" not in body  # fails on an active peering
    assert "ec2:AcceptVpcPeeringConnection" not in _actions(_statements(data, ""))


@pytest.mark.parametrize("region", [r.region for r in load().data_regions])
def test_the_services_wait_for_the_capacity_provider_association(synth, region):
    _, t = synth
    data = t[f"proxima-data-{region}"]
    (association,) = data.find_resources("AWS::ECS::ClusterCapacityProviderAssociations")
    services = data.find_resources("AWS::ECS::Service")
    on_hosts = {
        n: s for n, s in services.items() if s["Properties"].get("CapacityProviderStrategy")
    }
    assert len(services) == 2 and len(on_hosts) == 1  # the scheduler is on Fargate
    for name, service in on_hosts.items():
        assert association in service.get("DependsOn", []), name


def test_the_image_is_built_for_the_hosts_platform(synth):
    stacks, _ = synth
    outdir = Path(next(iter(stacks.values())).node.root.outdir)
    images = [
        image
        for assets in outdir.glob("*.assets.json")
        for image in json.loads(assets.read_text()).get("dockerImages", {}).values()
    ]
    assert images
    assert {image["source"].get("platform") for image in images} == {"linux/amd64"}


@pytest.mark.parametrize("region", [r.region for r in load().data_regions])
def test_dask_workers_get_the_prefect_api_from_a_secret(synth, region):
    _, t = synth
    data = t[f"proxima-data-{region}"]
    by_name = {
        c["Name"]: c
        for td in data.find_resources("AWS::ECS::TaskDefinition").values()
        for c in td["Properties"]["ContainerDefinitions"]
    }
    secrets = {s["Name"]: s["ValueFrom"] for s in by_name["Worker"]["Secrets"]}
    assert {"PREFECT_API_URL", "PREFECT_API_KEY"} <= set(secrets)
    assert "prefect-api" in json.dumps(secrets["PREFECT_API_URL"])
    env = {e["Name"] for e in by_name["Worker"].get("Environment", [])}
    assert not env & {"PREFECT_API_URL", "PREFECT_API_KEY"}  # never in plain text


@pytest.mark.parametrize("region", [r.region for r in load().data_regions])
def test_dask_workers_keep_large_arrays_in_the_heap_as_the_local_ones(synth, region):
    import ast

    from proxima.stack.services import DASK_LEAN

    _, t = synth
    (worker,) = [
        c
        for td in t[f"proxima-data-{region}"].find_resources("AWS::ECS::TaskDefinition").values()
        for c in td["Properties"]["ContainerDefinitions"]
        if c["Name"] == "Worker"
    ]
    env = {e["Name"]: e["Value"] for e in worker["Environment"]}
    key = "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON"
    assert ast.literal_eval(env[key]) == ast.literal_eval(DASK_LEAN[key])


def test_the_stac_api_runs_in_the_client_region_reading_the_catalog_as_an_analyst(synth):
    _, t = synth
    client = t["proxima-client"]
    tds = client.find_resources("AWS::ECS::TaskDefinition")
    (stac,) = [
        c
        for td in tds.values()
        for c in td["Properties"]["ContainerDefinitions"]
        if c["Name"] == "stac"
    ]
    command = stac["Command"]
    assert command[:3] == ["python", "-m", "proxima.stac"]
    assert command[command.index("--auth") + 1] == "sigv4"
    assert command[command.index("--alias") + 1] == "proxima-assets"
    # the task role reads the catalog with exactly the analysts' grants, and writes nothing
    roles = client.find_resources("AWS::IAM::Role")
    (stac_role,) = [k for k, r in roles.items() if k.startswith("StacRole")]
    policies = [
        p
        for p in client.find_resources("AWS::IAM::Policy").values()
        if {"Ref": stac_role} in p["Properties"]["Roles"]
    ]
    actions = {
        a
        for p in policies
        for st in p["Properties"]["PolicyDocument"]["Statement"]
        for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
    }
    assert actions and "es:ESHttpPut" not in actions and "es:ESHttpGet" in actions
    assert not any("s3:" in a for a in actions)
    # mapped to the analysts' OpenSearch role, or FGAC answers 403
    mapping = client.find_resources("Custom::CatalogRoles") or client.find_resources(
        "AWS::CloudFormation::CustomResource"
    )
    assert stac_role in json.dumps(mapping)
    # reachable from the Proxima networks only
    ingress = [
        r["Properties"]
        for r in client.find_resources("AWS::EC2::SecurityGroup").values()
        if "STAC" in r["Properties"]["GroupDescription"]
    ]
    (sg,) = ingress
    cidrs = {rule["CidrIp"] for rule in sg["SecurityGroupIngress"]}
    assert cidrs and not cidrs & set(OPEN)
    assert {rule["FromPort"] for rule in sg["SecurityGroupIngress"]} == {8090}
    assert "StacApiUrl" in client.find_outputs("*")


def test_the_docs_cost_table_is_what_the_synthesized_stacks_cost(synth, production):
    """docs/aws.md's idle totals are the sums over the templates at prices.yaml's list
    prices: a stack that gains a host, a NAT gateway or a bigger file system changes
    the sum, and this fails until the table is printed again."""
    from proxima_infra import costs

    stacks, _ = synth
    profiles = {
        "minimal": {n: (s.region, Template.from_stack(s).to_json()) for n, s in stacks.items()},
        "production": {
            n: (s.region, Template.from_stack(s).to_json()) for n, s in production.items()
        },
    }
    docs = (Path(__file__).resolve().parents[1] / "docs" / "aws.md").read_text()
    assert costs.table(profiles) in docs
    # 4 workers of 4 vCPU / 30 GB and the scheduler: 2 workers a host, the scheduler alone
    assert (
        costs.hosts_for([(4096, 30000)] * 4 + [(1024, 4096)], {"cpu": 8192, "memory": 63000}) == 3
    )


CPU_METRIC = "ECSServiceAverageCPUUtilization"


@pytest.mark.parametrize("region", ["us-east-1", "us-west-2"])
def test_the_minimal_profiles_workers_scale_to_none_when_idle(synth, production, region):
    """Minimal: the worker service starts at none, Application Auto Scaling brings it
    back to none after idle CPU, a run sets it up to `workers` (proxima/ecs.py); the
    scheduler runs on Fargate without /fsx, so no host stays up for it. Production keeps
    its workers. The outputs give the blocks the service and the count."""
    _, t = synth
    data, cfg = (
        t[f"proxima-data-{region}"],
        next(r for r in load().data_regions if r.region == region),
    )
    workers = next(
        r
        for r in data.find_resources("AWS::ECS::Service").values()
        if r["Properties"].get("ServiceName") == f"proxima-{region}-workers"
    )
    assert workers["Properties"]["DesiredCount"] == 0
    data.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {
            "MinCapacity": 0,
            "MaxCapacity": cfg.workers,
            "ScalableDimension": "ecs:service:DesiredCount",
        },
    )
    data.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "TargetTrackingScalingPolicyConfiguration": Match.object_like(
                {"PredefinedMetricSpecification": {"PredefinedMetricType": CPU_METRIC}}
            )
        },
    )
    data.has_resource_properties("AWS::ECS::Service", {"LaunchType": "FARGATE"})
    scheduler = next(
        r
        for r in data.find_resources("AWS::ECS::TaskDefinition").values()
        if r["Properties"]["ContainerDefinitions"][0]["Name"] == "Scheduler"
    )
    assert scheduler["Properties"]["RequiresCompatibilities"] == ["FARGATE"]
    assert not scheduler["Properties"]["ContainerDefinitions"][0].get("MountPoints")
    outputs = data.to_json()["Outputs"]
    assert outputs["Workers"]["Value"] == str(cfg.workers)
    busy = Template.from_stack(production[f"proxima-data-{region}"])
    busy.resource_count_is("AWS::ApplicationAutoScaling::ScalableTarget", 0)
    busy.has_resource_properties(
        "AWS::ECS::Service",
        {"ServiceName": f"proxima-{region}-workers", "DesiredCount": cfg.workers},
    )


def test_analyses_and_refreshes_may_wake_the_worker_services(synth):
    from tests.iam import role_named

    stacks, t = synth
    client = t["proxima-client"].to_json()
    region = stacks["proxima-client"].region
    for name in ("AnalystRole", "RefreshRole"):
        role = role_named("proxima-client", client, name, region)
        for r in load().data_regions:
            service = f"proxima-{r.region}/proxima-{r.region}-workers"
            arn = f"arn:aws:ecs:{r.region}:{iam.ACCOUNT}:service/{service}"
            assert role.allows("ecs:UpdateService", arn), (name, r.region)
        assert not role.allows(
            "ecs:UpdateService", f"arn:aws:ecs:us-east-1:{iam.ACCOUNT}:service/x/y"
        )


def test_the_analysts_workstation_is_reached_only_through_ssm(synth):
    """In the client VPC's private subnets, no inbound rule, no public address, an
    analyst's grants and Session Manager's; its helper runs the project image."""
    from tests.iam import role_named

    stacks, t = synth
    client = t["proxima-client"]
    (instance,) = client.find_resources("AWS::EC2::Instance").values()
    props = instance["Properties"]
    assert "AssociatePublicIpAddress" not in json.dumps(props)
    private = {
        k for k, r in client.find_resources("AWS::EC2::Subnet").items()
        if not r["Properties"].get("MapPublicIpOnLaunch")
    }  # fmt: skip
    assert props["SubnetId"]["Ref"] in private
    (group,) = [g["Fn::GetAtt"][0] for g in props["SecurityGroupIds"]]
    assert not client.to_json()["Resources"][group]["Properties"].get("SecurityGroupIngress")
    assert not [
        r for r in client.find_resources("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"].get("GroupId", {}).get("Fn::GetAtt", [None])[0] == group
    ]  # fmt: skip
    # IMDSv2 only, through the instance's own launch template (aws-cdk-lib then warns that
    # its app-wide RequireImdsv2Aspect cannot toggle it again: already required)
    template = client.to_json()["Resources"][props["LaunchTemplate"]["Version"]["Fn::GetAtt"][0]]
    assert template["Properties"]["LaunchTemplateData"]["MetadataOptions"] == {
        "HttpTokens": "required"
    }
    user_data = json.dumps(props["UserData"])
    assert "/usr/local/bin/proxima-run" in user_data and "proxima/prefect-api" in user_data
    role = role_named(
        "proxima-client", client.to_json(), "WorkstationRole", stacks["proxima-client"].region
    )
    assert role.allows("es:ESHttpPost", f"{iam.DOMAIN_ARN}/proxima-assets/_search")
    managed = json.dumps(
        client.to_json()["Resources"][role.logical_id]["Properties"]["ManagedPolicyArns"]
    )
    assert "AmazonSSMManagedInstanceCore" in managed
