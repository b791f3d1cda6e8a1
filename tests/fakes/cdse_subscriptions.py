"""A fake CDSE Subscriptions API (`/odata/v1/Subscriptions`) that checks bearer tokens with a FakeIdentity and,
like CDSE, allows one running subscription per user; a PULL subscription's queue with Read (≤ 20, oldest first,
non-destructive) and Ack (that notification and all before it). Other paths go to an optional FakeCatalogue, so
one URL serves both, as CDSE's catalogue host does."""

from __future__ import annotations

import base64
import collections
import datetime as dt
import json
import re
import uuid
from typing import Any
from urllib.parse import parse_qs

from tests.fakes.cdse_catalogue import FakeCatalogue
from tests.fakes.cdse_identity import FakeIdentity
from tests.fakes.http_server import DropMidBody, FakeHttpServer, Reply, json_reply

REQUIRED = ("FilterParam", "SubscriptionEvent", "Status", "SubscriptionType")
_ONE = re.compile(r"^/odata/v1/Subscriptions\((?P<id>[^)]*)\)(?P<action>/Read|/Ack)?$")
MAX_READ = 20


class FakeSubscriptions(FakeHttpServer):
    def __init__(self, identity: FakeIdentity, catalogue: FakeCatalogue | None = None) -> None:
        super().__init__()
        self.identity = identity
        self.catalogue = catalogue
        self.subscriptions: dict[str, dict[str, Any]] = {}  # id -> what was created, as CDSE stores it
        self.queues: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)  # PULL notifications
        self.acked: list[str] = []  # AckIds received, in order
        self.ack_faults: collections.deque[str] = collections.deque()  # "500" or "drop", one per Ack

    def enqueue(self, subscription_id: str, *notifications: dict[str, Any]) -> list[str]:
        """Queue notifications (shaped like the push fixtures) for a PULL subscription; returns their AckIds."""
        with self.lock:
            queue = self.queues[subscription_id]
            added = []
            for notification in notifications:
                ack_id = base64.b64encode(f"{len(queue)}-{uuid.uuid4()}:{subscription_id}".encode()).decode()
                queue.append({**notification, "SubscriptionId": subscription_id, "AckId": ack_id})
                added.append(ack_id)
        return added

    def age_out(self, subscription_id: str) -> None:
        """What CDSE does to notifications older than 3 days: `value` and `ProductName` removed."""
        with self.lock:
            self.queues[subscription_id] = [
                {k: v for k, v in n.items() if k not in ("value", "ProductName")} for n in self.queues[subscription_id]
            ]

    def handle(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> Reply:
        if self.catalogue is not None and not path.startswith("/odata/v1/Subscriptions"):
            return self.catalogue.handle(method, path, query, headers, body)
        if not self.identity.is_valid(headers.get("authorization")):
            return json_reply(401, {"detail": "Not authenticated"})
        if path == "/odata/v1/Subscriptions" and method == "POST":
            return self._create(json.loads(body or b"{}"))
        if path == "/odata/v1/Subscriptions/Info" and method == "GET":
            with self.lock:
                listed = [
                    {k: v for k, v in s.items() if k != "NotificationEpPassword"} for s in self.subscriptions.values()
                ]
            return json_reply(200, listed)
        if (match := _ONE.match(path)) and match["action"] == "/Read" and method == "GET":
            return self._read(match["id"], parse_qs(query))
        if (match := _ONE.match(path)) and match["action"] == "/Ack" and method == "POST":
            return self._ack(match["id"], parse_qs(query))
        if (match := _ONE.match(path)) and not match["action"] and method == "DELETE":
            with self.lock:
                removed = self.subscriptions.pop(match["id"], None)
            if removed is None:
                return json_reply(404, {"detail": f"Subscription {match['id']} not found"})
            return 204, {}, b""
        return json_reply(404, {"detail": "Not Found"})

    def _read(self, subscription_id: str, params: dict[str, list[str]]) -> Reply:
        with self.lock:
            if subscription_id not in self.subscriptions:
                return json_reply(404, {"detail": f"Subscription {subscription_id} not found"})
            top = int(params.get("$top", ["1"])[-1])
            if not 1 <= top <= MAX_READ:
                return json_reply(422, {"detail": f"$top must be 1..{MAX_READ}"})
            return json_reply(200, self.queues[subscription_id][:top])

    def _ack(self, subscription_id: str, params: dict[str, list[str]]) -> Reply:
        ack_id = params.get("$ackid", [""])[-1]
        with self.lock:
            fault = self.ack_faults.popleft() if self.ack_faults else None
            if fault == "500":
                return json_reply(500, {"detail": "Internal Server Error"})
            queue = self.queues[subscription_id]
            position = next((i for i, n in enumerate(queue) if n["AckId"] == ack_id), None)
            if position is None:
                return json_reply(404, {"detail": f"AckId {ack_id} not found"})
            if fault == "drop":  # the Ack is lost on the way: the queue keeps everything
                raise DropMidBody(json_reply(200, {"acked": 0}))
            del queue[: position + 1]
            self.acked.append(ack_id)
        return json_reply(200, {"acked": position + 1})

    def _create(self, request: dict[str, Any]) -> Reply:
        missing = [field for field in REQUIRED if field not in request]
        if missing:
            return json_reply(400, {"detail": f"missing {', '.join(missing)}"})
        with self.lock:
            if request["Status"] == "running" and any(s["Status"] == "running" for s in self.subscriptions.values()):
                return json_reply(403, {"detail": "Maximum number of running subscriptions reached"})
            subscription = {
                "Id": str(uuid.uuid4()),
                **request,
                "SubmissionDate": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
                "LastNotificationDate": None,
            }
            self.subscriptions[subscription["Id"]] = subscription
        return json_reply(201, {k: v for k, v in subscription.items() if k != "NotificationEpPassword"})
