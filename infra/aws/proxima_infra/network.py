"""Shared network construct: a VPC with flow logs and no public Dask or search ports."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

MAX_AZS = 2  # each VPC: one public and one private subnet per AZ


def vpc_with_flow_logs(scope: Construct, cidr: str) -> ec2.Vpc:
    """Two AZs, private subnets with egress through one NAT, flow logs to CloudWatch."""
    flow_logs = logs.LogGroup(
        scope,
        "FlowLogs",
        retention=logs.RetentionDays.ONE_MONTH,
        removal_policy=RemovalPolicy.DESTROY,
    )
    return ec2.Vpc(
        scope,
        "Vpc",
        ip_addresses=ec2.IpAddresses.cidr(cidr),
        max_azs=MAX_AZS,
        nat_gateways=1,
        subnet_configuration=[
            ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
            ec2.SubnetConfiguration(
                name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20
            ),
        ],
        # S3 traffic (results, image layers from ECR) bypasses the NAT gateway's per-GB fee
        gateway_endpoints={
            "s3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
        },
        flow_logs={
            "all": ec2.FlowLogOptions(
                destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs)
            )
        },
    )
