"""Scheduled PULL subscription reader (DEPLOY_SUBSCRIPTION_MODE=pull, SPEC §9): read the subscription's queue
until it is empty (or less than STOP_MARGIN of Lambda time remains), recording each batch and acknowledging it
after the commit, then deliver. `{}` (or `{"max": N}`) → the pull's counts.

The same code as `link-fetcher subscriptions pull`: a crash between a commit and its Ack re-reads those
notifications on the next run, which records nothing twice. The engine, the sessions and the sink clients live
as long as the container.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from link_fetcher.cdse.identity import token_provider
from link_fetcher.cdse.subscriptions import SubscriptionsApi
from link_fetcher.database import ENGINE_SETTINGS, engine_for
from link_fetcher.http import make_session
from link_fetcher.observability import Service
from link_fetcher.recording import RECORDING_SETTINGS, Recorder
from link_fetcher.settings import CdseSettings, CriteriaSettings, SubscriptionSettings, get_settings
from link_fetcher.sinks import configured_sinks
from link_fetcher.subscriptions.pull import PullSession

# The settings groups read here: the stack gives this function their variables (cdk/link_fetcher_cdk/environment.py).
SETTINGS_READ = (*ENGINE_SETTINGS, *RECORDING_SETTINGS, CdseSettings, CriteriaSettings, SubscriptionSettings)

STOP_MARGIN_MS = 30_000

logger = Logger(service=Service.PULL)


@functools.cache
def session() -> PullSession:
    settings = get_settings()
    tokens = token_provider(settings)
    if tokens is None:
        raise ValueError("no CDSE account: set CDSE_SECRET_ARN (or CDSE_USERNAME / CDSE_PASSWORD)")
    # POST (the Ack) is not retried by the session: a failed Ack only makes the next run read those again.
    api = SubscriptionsApi(settings.cdse.catalogue_url, tokens, make_session(methods=("GET", "DELETE")))
    recorder = Recorder.from_settings(settings, engine_for(settings), configured_sinks())
    return PullSession.from_settings(settings, recorder, api)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = session().run(
        max_notifications=(event or {}).get("max"),
        should_stop=lambda: context.get_remaining_time_in_millis() < STOP_MARGIN_MS,
    )
    delivery = session().recorder.deliver()
    result = dataclasses.asdict(report)
    logger.info("pulled", extra={**result, "delivered": delivery.sent, "pending": delivery.pending})
    return result
