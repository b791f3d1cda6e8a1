"""`cdk synth|diff|deploy|destroy` entry point (run from cdk/ by the CDK CLI; see cdk.json and the Makefile)."""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from link_fetcher_cdk.config import PROJECT_ROOT, load
from link_fetcher_cdk.stack import LinkFetcherStack

app = cdk.App()
config, settings = load()
# Environment-agnostic: the account and region are the CLI's at deploy time, so synth needs no credentials.
stack = LinkFetcherStack(app, config.identifier, project_root=PROJECT_ROOT, config=config, settings=settings)
# cdk-nag runs as a policy-validation plugin: any unacknowledged finding fails the synth.
cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True))
app.synth()
