"""cdk-nag suppressions, each on the resources it concerns, with the reason it is
acceptable there. Only findings that fire are suppressed: the infra test synthesizes
without them and fails if a (resource, rule) pair below no longer fires.
"""

from __future__ import annotations

from aws_cdk import Stack
from cdk_nag import NagPackSuppression, NagSuppressions

AWS_CDK_LIB_FUNCTIONS = (
    "Lambda functions and roles that aws-cdk-lib itself generates (custom-resource "
    "providers, the ECS drain hook): their runtime, the AWS-managed "
    "AWSLambdaBasicExecutionRole and their generated policies are aws-cdk-lib's."
)
ECR_TOKEN = (
    "ecr:GetAuthorizationToken has no resource-level permissions; aws-cdk-lib's task "
    "execution policy grants it on * next to pulls from the one asset repository."
)
CATALOG_PATHS = (
    "Catalog paths under the proxima-assets* alias and its versioned indices, point-in-time "
    "scans and _bulk: the index names are made at run time (tests/test_aws_iam.py checks "
    "every recorded call against these grants)."
)

# Construct path below the stack -> {rule: reason}; a suppression covers the construct
# and its children. Paths absent from a stack (client vs data region) are skipped.
SUPPRESSIONS: dict[str, dict[str, str]] = {
    "AnalystRole": {
        "AwsSolutions-IAM5": CATALOG_PATHS + " The results bucket's objects (any key)."
    },
    "RefreshRole": {"AwsSolutions-IAM5": CATALOG_PATHS},
    "Workstation/Instance": {
        "AwsSolutions-EC28": "A workstation for interactive sessions: basic monitoring is "
        "enough, and detailed monitoring would bill for metrics no one watches.",
        "AwsSolutions-EC29": "It holds no data (results go to S3, the catalog to "
        "OpenSearch): a redeploy that replaces it loses nothing.",
    },
    "WorkstationRole": {
        "AwsSolutions-IAM4": "AmazonSSMManagedInstanceCore, the AWS-maintained minimum for "
        "Session Manager, the workstation's only way in (no inbound rule, no public IP).",
        "AwsSolutions-IAM5": CATALOG_PATHS + " The results bucket's objects (any key); "
        "pulls from the project's image repository (ecr:GetAuthorizationToken has no "
        "resource-level permissions).",
    },
    "StacRole": {"AwsSolutions-IAM5": CATALOG_PATHS},
    "StacTask/ExecutionRole": {"AwsSolutions-IAM5": ECR_TOKEN},
    "WorkerTaskRole": {
        "AwsSolutions-IAM5": CATALOG_PATHS + " FSx data-repository tasks are created per "
        "import (task/*); DescribeDataRepositoryTasks has no resource-level permissions."
    },
    "PrefectWorkerTask/TaskRole": {
        "AwsSolutions-IAM5": "prefect-aws's ECS worker registers task definitions and looks "
        "up subnets and security groups: actions without resource-level permissions. "
        "RunTask, StopTask and DescribeTasks are conditioned on the one cluster."
    },
    "PrefectWorkerTask/ExecutionRole": {"AwsSolutions-IAM5": ECR_TOKEN},
    "SchedulerTask/ExecutionRole": {"AwsSolutions-IAM5": ECR_TOKEN},
    "WorkerTask/ExecutionRole": {"AwsSolutions-IAM5": ECR_TOKEN},
    "SchedulerTask/Resource": {
        "AwsSolutions-ECS2": "Only non-secret configuration is in environment variables "
        "(region name, TLS required); the TLS material comes from Secrets Manager."
    },
    "WorkerTask/Resource": {
        "AwsSolutions-ECS2": "Only non-secret configuration is in environment variables "
        "(region name, TLS required); the TLS material comes from Secrets Manager."
    },
    "FlowRunExecutionRole": {
        "AwsSolutions-IAM4": "AmazonECSTaskExecutionRolePolicy, the AWS-maintained minimum "
        "for flow-run tasks to pull the image and write their logs."
    },
    "CatalogRoles/MasterUser": {
        "AwsSolutions-IAM4": "AWSLambdaVPCAccessExecutionRole: the role-mapping function "
        "must run in the VPC to reach the domain; AWS-maintained minimum for that.",
        "AwsSolutions-IAM5": "PUT on the security plugin's API (_plugins/_security/api/*): "
        "the roles and mappings it writes.",
    },
    "CatalogRoles/Provider": {
        "AwsSolutions-IAM4": AWS_CDK_LIB_FUNCTIONS,
        "AwsSolutions-IAM5": AWS_CDK_LIB_FUNCTIONS,
    },
    "AWS679f53fac002430cb0da5b7982bd2287": {"AwsSolutions-IAM4": AWS_CDK_LIB_FUNCTIONS},
    "ClientLink": {
        "AwsSolutions-IAM5": "Routing and associating the zone act on the client region's "
        "resources, created by another stack in another region; ec2:DescribeVpcs, which "
        "the zone association needs, has no resource-level permissions."
    },
    "Catalog": {
        "AwsSolutions-OS3": "The domain is reachable only inside the VPC through a security "
        "group limited to Proxima's CIDRs, with fine-grained access control on IAM roles.",
        "AwsSolutions-OS5": "Anonymous access is off: fine-grained access control maps IAM "
        "roles (catalog_roles.py); the IAM policies are on the roles.",
        "AwsSolutions-IAM5": AWS_CDK_LIB_FUNCTIONS + " (its log-group resource policy).",
    },
    "DaskHosts/InstanceRole": {
        "AwsSolutions-IAM5": "aws-cdk-lib's ECS container-instance policy (the agent "
        "registers with the one cluster and polls for tasks)."
    },
    "DaskHosts/DrainECSHook": {
        "AwsSolutions-IAM4": AWS_CDK_LIB_FUNCTIONS,
        "AwsSolutions-IAM5": AWS_CDK_LIB_FUNCTIONS,
        "AwsSolutions-L1": AWS_CDK_LIB_FUNCTIONS,
    },
    "DaskHosts/LifecycleHookDrainHook": {
        "AwsSolutions-SNS3": "The topic aws-cdk-lib creates for the ECS drain lifecycle "
        "hook; only Auto Scaling publishes to it."
    },
    "DaskHosts/ASG": {
        "AwsSolutions-AS3": "Scaling events of the Dask hosts are visible in CloudWatch and "
        "ECS events; no one subscribes to SNS notifications for them."
    },
}


def suppress(stack: Stack, table: dict[str, dict[str, str]] | None = None) -> None:
    """Apply ``table`` (default ``SUPPRESSIONS``) to the constructs of ``stack``."""
    table = SUPPRESSIONS if table is None else table
    prefix = f"{stack.node.path}/"
    for construct in stack.node.find_all():
        rules = table.get(construct.node.path.removeprefix(prefix))
        if rules:
            NagSuppressions.add_resource_suppressions(
                construct,
                [NagPackSuppression(id=rule, reason=reason) for rule, reason in rules.items()],
                apply_to_children=True,
            )
