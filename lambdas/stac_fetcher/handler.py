"""Scheduled STAC watch (EventBridge): `{"watch": NAME, "datetime": "START/END"?}` → what was recorded and delivered.

The watch comes from STAC_WATCHES_FILE (packaged with the function); without `datetime` the run covers the
watch's lookback up to now. The engine and the sink clients live as long as the container.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from link_fetcher.database import ENGINE_SETTINGS, engine_for
from link_fetcher.observability import Service
from link_fetcher.recording import RECORDING_SETTINGS, Recorder
from link_fetcher.settings import StacSettings, get_settings
from link_fetcher.sinks import configured_sinks
from link_fetcher.stac.watch_run import run_watch

# The settings groups read here: the stack gives this function their variables (cdk/link_fetcher_cdk/environment.py).
SETTINGS_READ = (*ENGINE_SETTINGS, *RECORDING_SETTINGS, StacSettings)

logger = Logger(service=Service.STAC)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    name = event.get("watch")
    if not isinstance(name, str) or not name:
        raise ValueError('the event needs {"watch": NAME} (and optionally "datetime": "START/END")')
    settings = get_settings()
    recorder = Recorder.from_settings(settings, engine_for(settings), configured_sinks())
    result = run_watch(recorder, settings, name, datetime_text=event.get("datetime"))
    logger.info("watch done", extra=result)
    return result
