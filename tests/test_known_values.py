"""Sources and delivery statuses are StrEnums in the code and CHECK constraints in the database (migration 0008)."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError

from db import DeliveryEvent, DeliveryStatus, Source, granule_table, outbox_table, record_granules
from db.models import known_values_check
from link_fetcher.observability import FRESHNESS_SOURCES
from tests.factories import granule_record


def test_the_database_refuses_an_unknown_source(engine: Engine) -> None:
    unknown = dataclasses.replace(granule_record(1), source="scraped")  # type: ignore[arg-type]
    with pytest.raises(IntegrityError, match="ck_granule_source_known"), engine.begin() as conn:
        record_granules(conn, [unknown], ["sqs"])
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM granule")).scalar_one() == 0


def test_the_database_refuses_an_unknown_delivery_event(engine: Engine) -> None:
    with engine.begin() as conn:
        record_granules(conn, [granule_record(1)], ["sqs"])
    with pytest.raises(IntegrityError, match="ck_outbox_event_known"), engine.begin() as conn:
        conn.execute(text("UPDATE outbox SET event = 'modified'"))


def test_the_database_refuses_an_unknown_delivery_status(engine: Engine) -> None:
    with engine.begin() as conn:
        record_granules(conn, [granule_record(1)], ["sqs"])
    with pytest.raises(IntegrityError, match="ck_outbox_status_known"), engine.begin() as conn:
        conn.execute(text("UPDATE outbox SET status = 'lost'"))


def test_rows_read_through_the_tables_hold_enum_members(engine: Engine) -> None:
    with engine.begin() as conn:
        record_granules(conn, [granule_record(1, source=Source.STAC)], ["sqs"])
        source = conn.execute(select(granule_table.c.source)).scalar_one()
        status, event = conn.execute(select(outbox_table.c.status, outbox_table.c.event)).one()
    assert source is Source.STAC
    assert status is DeliveryStatus.PENDING
    assert event is DeliveryEvent.FOUND


@pytest.mark.unit
def test_the_checks_name_every_member() -> None:
    # `deletion`: a remembered deletion of a product never recorded (migration 0009 widens the check).
    assert known_values_check("source", Source) == "source IN ('search', 'subscription', 'stac', 'deletion')"
    assert known_values_check("status", DeliveryStatus) == "status IN ('pending', 'sent', 'failed')"
    assert known_values_check("event", DeliveryEvent) == "event IN ('found', 'deleted')"
    # One freshness alarm per source that delivers (a remembered deletion is never delivered).
    assert set(FRESHNESS_SOURCES) == set(Source) - {Source.DELETION}
