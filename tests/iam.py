"""An offline IAM check for the synthesized infra/aws templates: does a role's policy
allow an action on a resource? Enough of IAM's evaluation for identity policies that
the CDK app writes: Allow/Deny statements, action and resource wildcards (``*``,
``?``), CloudFormation intrinsics resolved to fixed stand-ins. A statement with a
Condition never matches (no request context is modelled), so a grant that depends on
one is not counted as a grant.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

ACCOUNT = "111122223333"
DOMAIN_ARN = f"arn:aws:es:us-east-1:{ACCOUNT}:domain/proxima-catalog"
FILE_SYSTEM_ID = "fs-0123456789abcdef0"


@functools.cache
def app() -> Any:
    """infra/aws's app, built and synthesized once per test session (~10 s)."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "1")
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    infra = str(Path(__file__).resolve().parents[1] / "infra" / "aws")
    if infra not in sys.path:
        sys.path.insert(0, infra)
    import app as infra_app

    built = infra_app.build(outdir=tempfile.mkdtemp(prefix="proxima-cdk-"))
    built.synth()
    return built


def stacks() -> dict[str, Any]:
    """The app's stacks by name."""
    from aws_cdk import Stack

    return {s.stack_name: s for s in app().node.children if isinstance(s, Stack)}


@functools.cache
def synthesized() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every stack's region and template (JSON)."""
    from aws_cdk.assertions import Template

    return {
        name: (stack.region, Template.from_stack(stack).to_json())
        for name, stack in stacks().items()
    }


def _pseudo(region: str) -> dict[str, str]:
    return {
        "AWS::Partition": "aws",
        "AWS::AccountId": ACCOUNT,
        "AWS::Region": region,
        "AWS::URLSuffix": "amazonaws.com",
    }


def resolve(value: Any, refs: dict[str, str]) -> str:
    """A template value as a string: Ref/GetAtt/Join/Sub resolved through ``refs``,
    anything unknown as ``<name>``.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return refs.get(arg, f"<{arg}>")
        if fn == "Fn::GetAtt":
            name = ".".join(arg) if isinstance(arg, list) else arg
            return refs.get(name, f"<{name}>")
        if fn == "Fn::Join":
            sep, parts = arg
            return sep.join(resolve(p, refs) for p in parts)
        if fn == "Fn::Sub":
            text = arg if isinstance(arg, str) else arg[0]
            return re.sub(r"\$\{([^}]+)\}", lambda m: refs.get(m[1], f"<{m[1]}>"), text)
    return f"<{next(iter(value)) if isinstance(value, dict) else value}>"


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@dataclass
class Role:
    """A role of a synthesized stack, with every statement attached to it."""

    stack: str
    logical_id: str
    statements: list[dict[str, Any]]
    refs: dict[str, str]

    def allows(self, action: str, resource: str) -> bool:
        """Whether an identity policy of the role allows ``action`` on ``resource``."""

        def matches(statement: dict[str, Any]) -> bool:
            actions = [a.lower() for a in _listed(statement.get("Action", []))]
            if not any(fnmatchcase(action.lower(), a) for a in actions):
                return False
            patterns = [resolve(r, self.refs) for r in _listed(statement.get("Resource", []))]
            return any(fnmatchcase(resource, p.replace("[", "[[]")) for p in patterns)

        relevant = [s for s in self.statements if matches(s)]
        if any(s["Effect"] == "Deny" for s in relevant):
            return False
        return any(s["Effect"] == "Allow" and "Condition" not in s for s in relevant)

    def without(self, needle: str) -> Role:
        """This role with every statement mentioning ``needle`` removed."""
        kept = [s for s in self.statements if needle not in json.dumps(s)]
        return Role(self.stack, self.logical_id, kept, self.refs)


def role(stack: str, template: dict[str, Any], logical_id: str, region: str) -> Role:
    """The role ``logical_id`` of ``template`` with its inline and attached statements."""
    resources = template["Resources"]
    statements: list[dict[str, Any]] = []
    for res in resources.values():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::IAM::Policy" and {"Ref": logical_id} in props.get("Roles", []):
            statements += props["PolicyDocument"]["Statement"]
    for policy in resources[logical_id]["Properties"].get("Policies", []):
        statements += policy["PolicyDocument"]["Statement"]
    refs = _pseudo(region) | {"CatalogDomainArn": DOMAIN_ARN}
    for name, res in resources.items():
        if res["Type"] == "AWS::OpenSearchService::Domain":
            refs[f"{name}.Arn"] = DOMAIN_ARN
        if res["Type"] == "AWS::FSx::FileSystem":
            refs[name] = FILE_SYSTEM_ID
    return Role(stack, logical_id, statements, refs)


def role_named(stack: str, template: dict[str, Any], prefix: str, region: str) -> Role:
    """The role whose logical id starts with ``prefix`` (CDK appends a hash)."""
    found = [
        name
        for name, res in template["Resources"].items()
        if res["Type"] == "AWS::IAM::Role" and name.startswith(prefix)
    ]
    assert len(found) == 1, f"{stack}: roles starting with {prefix}: {found}"
    return role(stack, template, found[0], region)


def task_role(stack: str, template: dict[str, Any], container: str, region: str) -> Role:
    """The task role of the ECS task definition whose container is ``container``."""
    for res in template["Resources"].values():
        if res["Type"] != "AWS::ECS::TaskDefinition":
            continue
        props = res["Properties"]
        if any(c["Name"] == container for c in props["ContainerDefinitions"]):
            return role(stack, template, props["TaskRoleArn"]["Fn::GetAtt"][0], region)
    raise AssertionError(f"{stack} has no task definition with a container {container}")


def required(call: dict[str, Any], region: str) -> list[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs a recorded call needs.

    Raises:
        AssertionError: An AWS operation this table does not know: a new kind of call
            must be added here with its IAM requirements, and granted in infra/aws.
    """
    if call["system"] == "opensearch":
        method = call["action"].upper()
        return [(f"es:ESHttp{method.title()}", f"{DOMAIN_ARN}{call['resource']}")]
    named = json.loads(call["resource"])
    arn = f"arn:aws:fsx:{region}:{ACCOUNT}"
    operation = call["action"]
    if operation == "fsx:CreateDataRepositoryTask":
        return [
            (operation, f"{arn}:file-system/{named['FileSystemId']}"),
            (operation, f"{arn}:task/*"),
        ]
    if operation == "fsx:DescribeDataRepositoryTasks":
        return [(operation, "*")]
    if operation in ("ecs:DescribeServices", "ecs:UpdateService"):
        services = named.get("services") or [named["service"]]
        base = f"arn:aws:ecs:{named['region']}:{ACCOUNT}:service/{named['cluster']}"
        return [(operation, f"{base}/{s}") for s in services]
    raise AssertionError(f"no IAM requirements known for {operation}: add them to tests/iam.py")
