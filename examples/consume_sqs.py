"""Consume the To Download SQS queue: handle each message, then delete it.

Delivery is at least once (a relay that crashed after SendMessageBatch but before recording it repeats that
batch; a standard queue may itself deliver twice), so `handle` must be idempotent on the body's `id`. A message
whose handling failed is not deleted: it reappears after the visibility timeout (then goes to the DLQ, if any).

    python examples/consume_sqs.py --queue-url https://sqs.eu-central-1.amazonaws.com/123456789012/to-download
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import boto3


def consume_once(
    client: Any, queue_url: str, handle: Callable[[dict[str, Any]], None], *, wait_seconds: int = 20
) -> int:
    """Receive up to 10 messages, handle each, delete those handled. Returns how many were deleted."""
    messages = client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds).get(
        "Messages", []
    )
    handled = []
    for message in messages:
        try:
            handle(json.loads(message["Body"]))
        except Exception as exc:  # noqa: BLE001 - leave it in the queue; it comes back after the visibility timeout
            print(f"not deleted, will be retried: {message['MessageId']}: {exc}")
            continue
        handled.append({"Id": str(len(handled)), "ReceiptHandle": message["ReceiptHandle"]})
    if handled:
        client.delete_message_batch(QueueUrl=queue_url, Entries=handled)
    return len(handled)


def once_per_id(handle: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """Skip bodies whose id was handled already (a repeated delivery). In memory here; a real consumer keys on
    the id where it records its work (a unique column, an object key), so repeats survive restarts too."""
    handled: set[str] = set()

    def handle_new(body: dict[str, Any]) -> None:
        if body["id"] not in handled:
            handle(body)
            handled.add(body["id"])

    return handle_new


def main() -> None:
    parser = argparse.ArgumentParser(description="Print each To Download message once, deleting it.")
    parser.add_argument("--queue-url", required=True)
    args = parser.parse_args()
    client = boto3.client("sqs")

    @once_per_id
    def handle(body: dict[str, Any]) -> None:
        print(json.dumps({"id": body["id"], "download_url": body["download_url"]}))

    while True:
        consume_once(client, args.queue_url, handle)


if __name__ == "__main__":
    main()
