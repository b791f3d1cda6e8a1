"""Step Functions' map step: fetch one publication day of one platform, then deliver what is new.

`{"query_date": "YYYY-MM-DD", "platform": "S2A"}` → the same plus `"completed"`. It stops before a page
while less than STOP_MARGIN of Lambda time remains, keeping every page it committed (`completed: false`);
the state machine calls it again and it resumes from the stored cursor. The engine, the CDSE session and
the sink clients live as long as the container.

`{"deletion_date": "YYYY-MM-DD"}` → the same plus `"completed"`: the deletions CDSE published that day
(DeletedProducts, SPEC §9), read and resumed the same way (the state machine's step after the products).
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict

from link_fetcher.cdse.search import CdseCatalogue
from link_fetcher.database import ENGINE_SETTINGS, engine_for
from link_fetcher.fetching import DayFetcher
from link_fetcher.fetching.deletions import DeletionFetcher
from link_fetcher.mission import MISSION
from link_fetcher.observability import Service
from link_fetcher.recording import RECORDING_SETTINGS, Recorder
from link_fetcher.settings import CdseSettings, CriteriaSettings, get_settings
from link_fetcher.sinks import configured_sinks

# The settings groups read here: the stack gives this function their variables (cdk/link_fetcher_cdk/environment.py).
SETTINGS_READ = (*ENGINE_SETTINGS, *RECORDING_SETTINGS, CdseSettings, CriteriaSettings)

STOP_MARGIN_MS = 60_000

logger = Logger(service=Service.FETCH)


class FetchRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query_date: dt.date
    platform: str


@functools.cache
def recorder() -> Recorder:
    settings = get_settings()
    return Recorder.from_settings(settings, engine_for(settings), configured_sinks())


@functools.cache
def fetcher() -> DayFetcher:
    settings = get_settings()
    return DayFetcher.from_settings(settings, recorder(), CdseCatalogue(settings.cdse.catalogue_url))


class DeletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    deletion_date: dt.date


@functools.cache
def deletion_fetcher() -> DeletionFetcher:
    return DeletionFetcher.from_settings(get_settings(), recorder())


def fetch_deletions(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = DeletionRequest.model_validate(event)
    report = deletion_fetcher().fetch(
        request.deletion_date, should_stop=lambda: context.get_remaining_time_in_millis() < STOP_MARGIN_MS
    )
    delivery = recorder().deliver()
    logger.info(
        "deletion day fetched",
        extra={
            "deletion_date": request.deletion_date.isoformat(),
            "completed": report.completed,
            "requests": report.requests,
            "read": report.read,
            "announced": report.announced,
            "remembered": report.remembered,
            "refused": report.refused,
            "malformed": report.malformed,
            "available": report.available,
            "delivered": delivery.sent,
            "pending": delivery.pending,
        },
    )
    return {"deletion_date": request.deletion_date.isoformat(), "completed": report.completed}


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "deletion_date" in event:
        return fetch_deletions(event, context)
    request = FetchRequest.model_validate(event)
    [platform] = MISSION.known_platforms([request.platform])
    report = fetcher().fetch(
        request.query_date, platform, should_stop=lambda: context.get_remaining_time_in_millis() < STOP_MARGIN_MS
    )
    delivery = recorder().deliver()
    logger.info(
        "day fetched",
        extra={
            "query_date": request.query_date.isoformat(),
            "platform": platform,
            "completed": report.completed,
            "requests": report.requests,
            "read": report.read,
            "new": report.new,
            "skipped": dict(report.skipped_because),
            "available": report.available,
            "delivered": delivery.sent,
            "pending": delivery.pending,
        },
    )
    return {"query_date": request.query_date.isoformat(), "platform": platform, "completed": report.completed}
