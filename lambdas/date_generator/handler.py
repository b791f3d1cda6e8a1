"""Step Functions' first step: the (publication day, platform) pairs the link fetcher is to read.

`{}` → the `lookback_days` (default 5) days before today (UTC), newest first, each with every configured
platform; `{"now": ISO time, "lookback_days": N, "platforms": ["S2A", …]}` overrides any of them (the schedule
passes its own time as `now`). Then, from the progress tables, the (day, platform)s and deletion days of the
UNFINISHED_DAYS_WINDOW days before the lookback whose fetch began and never completed (the state machine let them
fail after their retries so the other days finish): each schedule offers them again until they complete.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from link_fetcher.database import ENGINE_SETTINGS, engine_for
from link_fetcher.fetching import query_days
from link_fetcher.fetching.progress import DELETIONS, PRODUCTS
from link_fetcher.mission import MISSION
from link_fetcher.observability import Service
from link_fetcher.settings import CriteriaSettings, LifecycleSettings, get_settings

# The settings groups read here: the stack gives this function their variables (cdk/link_fetcher_cdk/environment.py).
SETTINGS_READ = (*ENGINE_SETTINGS, CriteriaSettings, LifecycleSettings)

DEFAULT_LOOKBACK_DAYS = 5

logger = Logger(service=Service.DATE_GENERATOR)


class DateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    now: dt.datetime | None = None
    lookback_days: int = Field(DEFAULT_LOOKBACK_DAYS, ge=1, le=366)
    platforms: list[str] | None = None


def request_today(request: DateRequest) -> dt.date:
    now = request.now or dt.datetime.now(dt.UTC)
    return (now.astimezone(dt.UTC) if now.tzinfo is not None else now).date()


def request_platforms(request: DateRequest, configured_platforms: list[str]) -> list[str]:
    return MISSION.known_platforms(request.platforms or configured_platforms)


def query_dates_platforms(request: DateRequest, configured_platforms: list[str]) -> list[list[str]]:
    platforms = request_platforms(request, configured_platforms)
    days = query_days(request_today(request), request.lookback_days)
    return [[day.isoformat(), platform] for day in days for platform in platforms]


def unfinished(request: DateRequest, platforms: list[str], window: int) -> tuple[list[list[str]], list[str]]:
    """The (day, platform)s and deletion days left unfinished in the `window` days before the lookback days."""
    if window == 0:
        return [], []
    before = request_today(request) - dt.timedelta(days=request.lookback_days)
    first = before - dt.timedelta(days=window)
    with engine_for(get_settings()).connect() as conn:
        pairs = PRODUCTS.unfinished(conn, first, before, platforms)
        deletion_days = DELETIONS.unfinished(conn, first, before)
    return [[day.isoformat(), str(platform)] for day, platform in pairs], [day.isoformat() for day, _ in deletion_days]


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = DateRequest.model_validate(event or {})
    settings = get_settings()
    pairs = query_dates_platforms(request, settings.criteria.platforms)
    # The same days' deletions are read after the products (SPEC §9): one entry per day.
    deletion_dates = list(dict.fromkeys(day for day, _ in pairs))
    retried_pairs, retried_deletions = unfinished(
        request, request_platforms(request, settings.criteria.platforms), settings.lifecycle.unfinished_days_window
    )
    logger.info(
        "dates generated",
        extra={"pairs": len(pairs), "deletion_days": len(deletion_dates), "unfinished_pairs": retried_pairs,
               "unfinished_deletion_days": retried_deletions},
    )  # fmt: skip
    return {"query_dates_platforms": pairs + retried_pairs, "deletion_dates": deletion_dates + retried_deletions}
