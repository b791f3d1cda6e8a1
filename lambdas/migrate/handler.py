"""CloudFormation custom resource (CDK Provider framework): migrate the database to the latest Alembic revision.

Create and Update (the stack passes a fingerprint of the migrations, so a new migration is an Update) run
`upgrade_head` against the database named by DATABASE_SECRET_ARN; Delete leaves the schema to the database's own
removal policy. An error fails the deployment, which CloudFormation then rolls back.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from db import get_engine
from db.migrate import current_revision, upgrade_head
from link_fetcher.database import configured_url
from link_fetcher.observability import Service
from link_fetcher.settings import DatabaseSettings, Settings

# The settings groups read here: the stack gives this function their variables (cdk/link_fetcher_cdk/environment.py).
SETTINGS_READ = (DatabaseSettings,)

logger = Logger(service=Service.MIGRATE)
PHYSICAL_RESOURCE_ID = "link-fetcher-schema"


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = event["RequestType"]
    if request == "Delete":
        return {"PhysicalResourceId": event.get("PhysicalResourceId", PHYSICAL_RESOURCE_ID)}
    url = configured_url(Settings())
    if url is None:
        raise RuntimeError("DATABASE_SECRET_ARN (or DATABASE_URL) is not set")
    engine = get_engine(url, pool_size=1)
    before = current_revision(engine)
    upgrade_head(engine)
    after = current_revision(engine)
    logger.info("database migrated", request=request, revision_before=before, revision=after)
    return {"PhysicalResourceId": PHYSICAL_RESOURCE_ID, "Data": {"Revision": after}}
