"""Step Functions' first step: the (publication day, platform) pairs the link fetcher is to read.

`{}` → the `lookback_days` (default 5) days before today (UTC), newest first, each with every configured
platform; `{"now": ISO time, "lookback_days": N, "platforms": ["S2A", …]}` overrides any of them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from link_fetcher.fetching import query_days
from link_fetcher.observability import Service
from link_fetcher.settings import KNOWN_PLATFORMS, get_settings

DEFAULT_LOOKBACK_DAYS = 5

logger = Logger(service=Service.DATE_GENERATOR)


class DateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    now: dt.datetime | None = None
    lookback_days: int = Field(DEFAULT_LOOKBACK_DAYS, ge=1, le=366)
    platforms: list[str] | None = None


def query_dates_platforms(request: DateRequest, configured_platforms: list[str]) -> list[list[str]]:
    now = request.now or dt.datetime.now(dt.UTC)
    if now.tzinfo is not None:
        now = now.astimezone(dt.UTC)
    platforms = [platform.upper() for platform in (request.platforms or configured_platforms)]
    unknown = sorted(set(platforms) - set(KNOWN_PLATFORMS))
    if unknown:
        raise ValueError(f"unknown platform(s): {', '.join(unknown)}")
    days = query_days(now.date(), request.lookback_days)
    return [[day.isoformat(), platform] for day in days for platform in platforms]


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = DateRequest.model_validate(event or {})
    pairs = query_dates_platforms(request, get_settings().platforms)
    # The same days' deletions are read after the products (SPEC §9): one entry per day.
    deletion_dates = list(dict.fromkeys(day for day, _ in pairs))
    logger.info("dates generated", extra={"pairs": len(pairs), "deletion_days": len(deletion_dates)})
    return {"query_dates_platforms": pairs, "deletion_dates": deletion_dates}
