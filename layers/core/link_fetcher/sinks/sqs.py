"""SQS sink: SendMessageBatch of ≤ 10; FIFO queues get a group (tile) and a deduplication id (granule id)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import boto3
import msgspec
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from link_fetcher.sinks import BeforeSend, Message, SinkUnavailable

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

    from link_fetcher.settings import Settings

# Fail fast when the queue is unreachable: the delivery stays pending and a later relay retries it. No
# client-side parameter validation: the entries are built here, SQS checks them anyway, and it is a large share
# of a call's CPU.
SQS_CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=20,
    retries={"max_attempts": 3, "mode": "standard"},
    parameter_validation=False,
)
_ENCODER = msgspec.json.Encoder()  # compact JSON, far cheaper than json.dumps


class SqsSink:
    name = "sqs"

    def __init__(self, queue_url: str, client: SQSClient | None = None) -> None:
        self.queue_url = queue_url
        self.fifo = queue_url.endswith(".fifo")
        self._client = client or boto3.client("sqs", config=SQS_CLIENT_CONFIG)
        # `send`'s before_send runs from botocore's before-send event: after the request is serialized and signed
        # (most of a call's CPU), before it is written to the socket. Relay workers share the client, so each
        # thread's callback is its own.
        self._before_send = threading.local()
        self._client.meta.events.register("before-send.sqs.SendMessageBatch", self._run_before_send)

    @classmethod
    def from_settings(cls, settings: Settings) -> SqsSink:
        if not settings.sinks.to_download_queue_url:
            raise ValueError("TO_DOWNLOAD_QUEUE_URL is not set")
        return cls(settings.sinks.to_download_queue_url)

    def _run_before_send(self, **_: object) -> None:
        callback = getattr(self._before_send, "callback", None)
        if callback is not None:
            self._before_send.callback = None  # once: not again for botocore's own retries
            callback()

    def entries(self, messages: Sequence[Message]) -> list[SendMessageBatchRequestEntryTypeDef]:
        """The SendMessageBatch entries of a batch; `Id` is the message's index in it."""
        entries: list[SendMessageBatchRequestEntryTypeDef] = []
        for index, message in enumerate(messages):
            entry: SendMessageBatchRequestEntryTypeDef = {
                "Id": str(index),
                "MessageBody": _ENCODER.encode(message.body).decode(),
            }
            if self.fifo:
                entry["MessageGroupId"] = message.group
                entry["MessageDeduplicationId"] = message.id
            entries.append(entry)
        return entries

    def send(self, messages: Sequence[Message], before_send: BeforeSend | None = None) -> dict[str, str]:
        self._before_send.callback = before_send
        try:
            response = self._client.send_message_batch(QueueUrl=self.queue_url, Entries=self.entries(messages))
        except (BotoCoreError, ClientError) as exc:
            raise SinkUnavailable(f"SQS {self.queue_url}: {exc}") from exc
        finally:
            self._before_send.callback = None
        refused = {
            messages[int(failure["Id"])].id: f"{failure.get('Code', 'Error')}: {failure.get('Message', '')}".strip()
            for failure in response.get("Failed", [])
        }
        accepted = {entry["Id"] for entry in response.get("Successful", [])}
        for index, message in enumerate(messages):
            # An entry SQS reports neither way was not confirmed: keep it pending rather than assume.
            if str(index) not in accepted and message.id not in refused:
                refused[message.id] = "not confirmed by SQS"
        return refused
