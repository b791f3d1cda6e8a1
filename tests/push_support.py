"""Helpers shared by the push endpoint tests: notifications, Basic auth headers, a fake SQS queue."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, text

from db import record_granules
from link_fetcher.cdse.products import to_record
from tests.factories import FIXTURES, PUSH_FIXTURE, cdse_product
from tests.fakes.cdse_catalogue import deleted_entity

DELETED_FIXTURE = json.loads((FIXTURES / "push-granule-deleted.json").read_text())
USERNAME = "cdse-push"
PASSWORD = "pä55:word"  # non-ASCII and a colon: both must survive Basic auth


def basic(username: str = USERNAME, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def notification(event: str = "created", **product: Any) -> dict[str, Any]:
    """The real fixture with a fresh product Id, sensed a day ago unless `sensing` says otherwise."""
    product.setdefault("sensing", dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    value = cdse_product(**product)
    return {
        **PUSH_FIXTURE,
        "SubscriptionEvent": event,
        "ProductId": value["Id"],
        "ProductName": value["Name"],
        "value": value,
    }


def deleted_notification(product: dict, cause: str = "Corrupted product", when: dt.datetime | None = None) -> dict:
    """The deleted fixture, about `product` (a CDSE product dict), deleted and notified `when` (default: an hour
    after its publication; a deletion dated before it is not believed)."""
    body = copy.deepcopy(DELETED_FIXTURE)
    when = when or dt.datetime.fromisoformat(product["PublicationDate"]) + dt.timedelta(hours=1)
    body.update(
        ProductId=product["Id"],
        ProductName=product["Name"],
        NotificationDate=when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )
    body["value"].update(deleted_entity(product, when, cause))
    return body


def recent_fixture() -> dict[str, Any]:
    """The real fixture untouched but for its sensing dates, moved to an hour ago."""
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {**PUSH_FIXTURE, "value": {**PUSH_FIXTURE["value"], "ContentDate": {"Start": start, "End": start}}}


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


def granule_rows(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text("SELECT id, source FROM granule ORDER BY id"))]


def outbox_rows(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text("SELECT granule_id, sink, status FROM outbox ORDER BY id"))]


def queued_ids(sqs_endpoint: Any, queue: str) -> list[str]:
    """Granule ids of the messages in the fake SQS queue, in arrival order."""
    return [json.loads(message["Body"])["id"] for message in sqs_endpoint.fake.messages(queue)]


def settled_queue(sqs_endpoint: Any, queue: str, engine: Engine, timeout: float = 10.0) -> list[str]:
    """The queued ids once nothing is pending any more: `serve` delivers from a background relay, so a
    message follows its 204 by a few milliseconds."""
    deadline = time.monotonic() + timeout
    while any(status == "pending" for _, _, status in outbox_rows(engine)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return queued_ids(sqs_endpoint, queue)


def race_pushes_and_poller(push: Callable[[threading.Barrier], int], product: Any, engine: Engine) -> list[int]:
    """16 threads push (each calls `push(start)`, waits on the barrier itself, returns the status) while the
    poller records the same product; all released at once. Returns the 16 statuses."""
    start = threading.Barrier(17)
    statuses: list[int] = []

    def poll() -> None:
        start.wait()
        with engine.begin() as conn:
            record_granules(conn, [to_record(product, source="search", download_base_url="https://d")], ["sqs"])

    threads = [threading.Thread(target=lambda: statuses.append(push(start))) for _ in range(16)]
    threads.append(threading.Thread(target=poll))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses
