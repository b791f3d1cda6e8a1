"""A fake CDSE Subscriptions API (`/odata/v1/Subscriptions`) that checks bearer tokens with a FakeIdentity and,
like CDSE, allows one running subscription per user."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any

from tests.fakes.cdse_identity import FakeIdentity
from tests.fakes.http_server import FakeHttpServer, Reply, json_reply

REQUIRED = ("FilterParam", "SubscriptionEvent", "Status", "SubscriptionType")
_ONE = re.compile(r"^/odata/v1/Subscriptions\((?P<id>[^)]*)\)$")


class FakeSubscriptions(FakeHttpServer):
    def __init__(self, identity: FakeIdentity) -> None:
        super().__init__()
        self.identity = identity
        self.subscriptions: dict[str, dict[str, Any]] = {}  # id -> what was created, as CDSE stores it

    def handle(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> Reply:
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
        if (match := _ONE.match(path)) and method == "DELETE":
            with self.lock:
                removed = self.subscriptions.pop(match["id"], None)
            if removed is None:
                return json_reply(404, {"detail": f"Subscription {match['id']} not found"})
            return 204, {}, b""
        return json_reply(404, {"detail": "Not Found"})

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
