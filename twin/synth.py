"""A `cdk.out/` for the twin, synthesized in this process by the stack's own app code (what `make synth` runs,
without the CLI, cdk-nag and cfn-lint): for the tests and for the PULL mode's second run.

Bundling is the stack's own (pip for the layers, copies for the functions). Assets already bundled in `seed`
(another cdk.out, e.g. the one `make synth` wrote) are linked in first: CDK reuses an `asset.<hash>` that exists,
and a layer's hash is the fingerprint of its content, so an unchanged layer is not bundled twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def synthesize(
    outdir: Path,
    *,
    mode: Literal["push", "pull"] = "push",
    seed: Path | None = PROJECT_ROOT / "cdk.out",
    bundle: bool = True,
) -> Path:
    """Synthesize the stack with DEPLOY_SUBSCRIPTION_MODE=`mode` (defaults otherwise, no `.env`) into `outdir`."""
    from cdk.link_fetcher_cdk.node import use_project_node

    use_project_node()  # jsii starts the project's Node (package.json), not the system's
    import aws_cdk as cdk  # the CDK (and its Node.js process) only when synthesizing

    from cdk.link_fetcher_cdk.config import DeployConfig
    from cdk.link_fetcher_cdk.stack import LinkFetcherStack
    from link_fetcher.settings import read_settings

    outdir.mkdir(parents=True, exist_ok=True)
    if seed is not None and seed.is_dir():
        for asset in seed.glob("asset.*"):
            if not (outdir / asset.name).exists():
                (outdir / asset.name).symlink_to(asset.resolve())
    config = DeployConfig(_env_file=None, subscription_mode=mode)
    # The app's context as the CLI gives it: cdk.json's feature flags, and asset paths in the metadata.
    context = {**json.loads((PROJECT_ROOT / "cdk" / "cdk.json").read_text()).get("context", {}),
               "aws:cdk:enable-asset-metadata": True}  # fmt: skip
    if not bundle:
        context["aws:cdk:bundling-stacks"] = []
    app = cdk.App(outdir=str(outdir), context=context)
    LinkFetcherStack(app, config.identifier, project_root=PROJECT_ROOT, config=config, settings=read_settings(None))
    app.synth()
    return outdir
