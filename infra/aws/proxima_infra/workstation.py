r"""The analysts' workstation: an instance in the client VPC's private subnets, reached
only through SSM Session Manager (no inbound rule, no public address), with the project
image and an analyst's grants, from which a notebook or `proxima analyze` reaches the
VPC-only catalog and the regional schedulers.

    aws ssm start-session --target <WorkstationId>              # a shell, then:
    proxima-run proxima analyze request.json                    # the project image
    aws ssm start-session --target <WorkstationId> \\
        --document-name AWS-StartPortForwardingSession \\
        --parameters portNumber=8888,localPortNumber=8888       # and on the instance:
    proxima-run notebook                                        # JupyterLab on :8888
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

INSTANCE_TYPE = "t3.medium"

# /usr/local/bin/proxima-run: the project image with the instance's role and the
# deployment's Prefect (from the client region's <project>/prefect-api secret)
RUN_SCRIPT = """#!/bin/sh
set -eu
secret=$(aws secretsmanager get-secret-value --region {region} --secret-id {secret} \\
  --query SecretString --output text)
field() {{ printf %s "$secret" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }}
PREFECT_API_URL=$(field url) PREFECT_API_KEY=$(field key)
export PREFECT_API_URL PREFECT_API_KEY
aws ecr get-login-password --region {region} | sudo docker login --username AWS --password-stdin \\
  "$(echo {image} | cut -d/ -f1)" > /dev/null
if [ "${{1:-}}" = notebook ]; then
  set -- sh -c "pip install --user -q jupyterlab &&
    python -m jupyterlab --ip 127.0.0.1 --port 8888 --no-browser"
fi
# sudo: Session Manager's ssm-user exists only from the first session on, so it cannot
# be put in the docker group at boot; it has passwordless sudo
exec sudo --preserve-env=PREFECT_API_URL,PREFECT_API_KEY docker run --rm -it --network host \\
  -e PREFECT_API_URL -e PREFECT_API_KEY \\
  -e HOME=/work -v "$PWD:/work" -w /work {image} "$@"
"""


class Workstation(Construct):
    """The instance, its role (an analyst's grants, mapped as an analyst in the
    catalog) and its security group (outbound only).
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, vpc: ec2.IVpc, role: iam.Role,
        image_uri: str, prefect_api: secretsmanager.ISecret,
    ) -> None:  # fmt: skip
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        prefect_api.grant_read(role)
        asset = stack.node.try_find_child("ProjectImage")
        if isinstance(asset, ecr_assets.DockerImageAsset):
            asset.repository.grant_pull(role)
        group = ec2.SecurityGroup(
            self,
            "Sg",
            vpc=vpc,
            description="The analysts workstation: no inbound (SSM sessions start outbound)",
            allow_all_outbound=True,
        )
        user_data = ec2.UserData.for_linux()
        script = RUN_SCRIPT.format(
            region=stack.region, secret=prefect_api.secret_name, image=image_uri
        )
        user_data.add_commands(
            "set -euo pipefail",
            "dnf install -y docker",
            "systemctl enable --now docker",
            f"cat > /usr/local/bin/proxima-run <<'SCRIPT'\n{script}SCRIPT",
            "chmod 755 /usr/local/bin/proxima-run",
        )
        self.instance = ec2.Instance(
            self,
            "Instance",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            instance_type=ec2.InstanceType(INSTANCE_TYPE),
            machine_image=ec2.MachineImage.latest_amazon_linux2023(),
            role=role,
            security_group=group,
            require_imdsv2=True,
            user_data=user_data,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        30, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3
                    ),
                )
            ],
        )
