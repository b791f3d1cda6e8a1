"""To Download messages → downloads: the same path for the Lambda (one record at a time) and the CLI
(`download --from-queue`, which receives from SQS and deletes what it stored)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from botocore.config import Config

from link_fetcher.downloader.service import Downloader, Outcome, Result, granule_id_of

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import DeleteMessageBatchRequestEntryTypeDef

RECEIVE_WAIT_SECONDS = 2  # long poll: an empty answer then means the queue is empty, not unlucky sampling


def download_messages(
    downloader: Downloader, bodies: Sequence[str], on_outcome: Callable[[Outcome], None] | None = None
) -> list[Outcome]:
    """One outcome per message body, in order; an unreadable body fails alone."""
    ids: list[str | None] = []
    errors: dict[int, str] = {}
    for index, body in enumerate(bodies):
        try:
            ids.append(granule_id_of(body))
        except ValueError as exc:
            ids.append(None)
            errors[index] = str(exc)
    by_id = {outcome.granule_id: outcome for outcome in downloader.download([i for i in ids if i], on_outcome)}
    return [
        by_id[granule_id] if granule_id else Outcome("", Result.FAILED, error=errors[index])
        for index, granule_id in enumerate(ids)
    ]


@dataclasses.dataclass(frozen=True, slots=True)
class ReceivedMessage:
    body: str
    receipt_handle: str


class SqsQueue:
    def __init__(self, queue_url: str, client: Any = None) -> None:
        import boto3

        self.queue_url = queue_url
        config = Config(connect_timeout=5, read_timeout=RECEIVE_WAIT_SECONDS + 20, retries={"mode": "standard"})
        self._client = client or boto3.client("sqs", config=config)

    def receive(self, count: int) -> list[ReceivedMessage]:
        response = self._client.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=min(count, 10), WaitTimeSeconds=RECEIVE_WAIT_SECONDS
        )
        return [ReceivedMessage(m["Body"], m["ReceiptHandle"]) for m in response.get("Messages", [])]

    def delete(self, messages: Sequence[ReceivedMessage]) -> None:
        if messages:
            entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
                {"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(messages)
            ]
            self._client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)


def consume(
    downloader: Downloader,
    queue: SqsQueue,
    *,
    limit: int | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Download what the queue holds (at most `limit` messages). Stored or skipped → deleted; failed → left
    for the visibility timeout, so SQS redelivers it and, after maxReceiveCount, moves it to the DLQ."""
    outcomes: list[Outcome] = []
    while limit is None or len(outcomes) < limit:
        wanted = downloader.concurrency if limit is None else min(downloader.concurrency, limit - len(outcomes))
        messages = queue.receive(wanted)
        if not messages:
            break
        results = download_messages(downloader, [m.body for m in messages], on_outcome)
        queue.delete([message for message, outcome in zip(messages, results, strict=True) if outcome.ok])
        outcomes.extend(results)
    return outcomes
