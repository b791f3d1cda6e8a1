"""What moto cannot play: SQS throttling. A proxy between the functions that send (their AWS_ENDPOINT_URL) and the
twin's moto server forwards every AWS request, answers SendMessageBatch with SQS's throttling error while
`throttled` is set, and counts the messages SQS took per (granule id, event) from the answers it forwards.

SQS speaks JSON (X-Amz-Target: AmazonSQS.<Action>) to current botocore; the query protocol (Action=...) is read too.
"""

from __future__ import annotations

import collections
import http.client
import json
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.http_server import FakeHttpServer, Reply

SEND_BATCH = "SendMessageBatch"
# What SQS answers a throttled request (botocore retries it as throttling, then raises it to the caller).
THROTTLED = {"__type": "com.amazonaws.sqs#RequestThrottled", "message": "Request is throttled."}
_HOP_BY_HOP = {"connection", "transfer-encoding", "keep-alive", "host"}


class SqsProxy(FakeHttpServer):  # type: ignore[misc]  # the fakes are not type-checked (pyproject)
    def __init__(self) -> None:
        super().__init__()
        self.upstream: str | None = None  # the moto server, set once the twin runs
        self.throttled = False
        self.throttled_calls = 0
        self.messages: collections.Counter[tuple[str, str]] = collections.Counter()
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        assert self.upstream is not None, "SqsProxy.upstream is not set"
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            parts = urlsplit(self.upstream)
            connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
            self._local.connection = connection
        return connection

    def handle(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> Reply:
        action = _action(headers, body)
        if action == SEND_BATCH and self.throttled:
            with self.lock:
                self.throttled_calls += 1
            return 400, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(THROTTLED).encode()
        forwarded = {key: value for key, value in headers.items() if key not in _HOP_BY_HOP | {"content-length"}}
        target = path + (f"?{query}" if query else "")
        try:
            status, reply_headers, payload = self._forward(method, target, forwarded, body)
        except (OSError, http.client.HTTPException):
            self._local.connection = None
            status, reply_headers, payload = self._forward(method, target, forwarded, body)
        if action == SEND_BATCH and status == 200:
            self._count(body, payload)
        return status, reply_headers, payload

    def _forward(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        connection = self._connection()
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        reply_headers = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
        return response.status, reply_headers, payload

    def _count(self, request: bytes, reply: bytes) -> None:
        """The entries SQS reports successful, by the (id, event) of their body."""
        entries, successful = _batch(request, reply)
        with self.lock:
            for entry_id, message in entries.items():
                if entry_id in successful:
                    self.messages[(str(message.get("id")), str(message.get("event", "found")))] += 1


def _action(headers: dict[str, str], body: bytes) -> str | None:
    target = headers.get("x-amz-target")
    if target:
        return target.rsplit(".", 1)[-1]
    if body.startswith(b"Action="):
        return parse_qs(body.decode())["Action"][0]
    return None


def _batch(request: bytes, reply: bytes) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """(entry id -> message body, ids of the successful entries) of a SendMessageBatch and its answer."""
    if request.startswith(b"{"):
        sent = json.loads(request)
        entries = {entry["Id"]: json.loads(entry["MessageBody"]) for entry in sent.get("Entries", [])}
        successful = {entry["Id"] for entry in json.loads(reply or b"{}").get("Successful", [])}
        return entries, successful
    form = parse_qs(request.decode())
    entries = {}
    index = 1
    while f"SendMessageBatchRequestEntry.{index}.Id" in form:
        entry_id = form[f"SendMessageBatchRequestEntry.{index}.Id"][0]
        entries[entry_id] = json.loads(form[f"SendMessageBatchRequestEntry.{index}.MessageBody"][0])
        index += 1
    text = reply.decode(errors="replace")
    successful = {entry_id for entry_id in entries if f"<Id>{entry_id}</Id>" in text.split("BatchResultErrorEntry")[0]}
    return entries, successful
