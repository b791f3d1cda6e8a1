"""Downloader Lambda on the To Download SQS queue: each record is one granule to store and verify.

Partial batch responses: a record that fails is reported in `batchItemFailures`, so SQS redelivers only it
(and moves it to the DLQ after maxReceiveCount); the records that succeeded are not downloaded again.
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from link_fetcher.database import ENGINE_SETTINGS, engine_for
from link_fetcher.downloader.queue import download_messages
from link_fetcher.downloader.service import Downloader, build_downloader
from link_fetcher.observability import Service
from link_fetcher.settings import CdseSettings, DownloaderSettings, get_settings

# The settings groups read here: the stack gives this function their variables (cdk/link_fetcher_cdk/environment.py).
SETTINGS_READ = (*ENGINE_SETTINGS, CdseSettings, DownloaderSettings)

logger = Logger(service=Service.DOWNLOADER)
processor = BatchProcessor(event_type=EventType.SQS)


class DownloadFailed(RuntimeError):
    pass


@functools.cache
def downloader() -> Downloader:
    """Built once per container: settings, engine, S3 client, HTTP session and CDSE token are reused."""
    settings = get_settings()
    return build_downloader(settings, engine_for(settings))


def record_handler(record: SQSRecord) -> str:
    (outcome,) = download_messages(downloader(), [record.body])
    logger.info("download", granule_id=outcome.granule_id, result=str(outcome.result), object_key=outcome.object_key)
    if not outcome.ok:
        raise DownloadFailed(f"{outcome.granule_id or record.message_id}: {outcome.error}")
    return outcome.result


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
