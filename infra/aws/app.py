"""The Proxima CDK app: one client-region stack and one stack per data region.

cd infra/aws && npx cdk synth     (or: python app.py, which synthesizes to cdk.out)

The feature flags are cdk.json's ``context`` (aws-cdk-lib's recommended flags for a
new project, e.g. launch templates instead of launch configurations, which accounts
created since 2024-10-01 cannot create); ``build`` applies them too, so tests and
``python app.py`` synthesize exactly what ``cdk deploy`` would.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxima_infra import config as infra_config
from proxima_infra.client_region import ClientRegionStack
from proxima_infra.data_region import DataRegionStack
from proxima_infra.suppressions import suppress


def build(
    cfg: infra_config.InfraConfig | None = None,
    outdir: str | None = None,
    suppressions: dict[str, dict[str, str]] | None = None,
) -> cdk.App:
    """Build (not synthesize) the app with cdk-nag's AwsSolutions checks attached."""
    cfg = cfg or infra_config.load()
    context = json.loads((Path(__file__).resolve().parent / "cdk.json").read_text())["context"]
    app = cdk.App(outdir=outdir, context=context) if outdir else cdk.App(context=context)
    stacks: list[cdk.Stack] = [
        ClientRegionStack(
            app, f"{cfg.project}-client", cfg=cfg, env=cdk.Environment(region=cfg.client.region)
        )
    ]
    for region in cfg.data_regions:
        stacks.append(
            DataRegionStack(
                app,
                f"{cfg.project}-data-{region.region}",
                cfg=cfg,
                region_cfg=region,
                env=cdk.Environment(region=region.region),
            )
        )
    for stack in stacks:
        suppress(stack, suppressions)
        cdk.Tags.of(stack).add("project", cfg.project)
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return app


if __name__ == "__main__":
    # the CDK CLI names the output directory (CDK_OUTDIR); run alone, cdk.out
    build(outdir=None if "CDK_OUTDIR" in os.environ else "cdk.out").synth()
