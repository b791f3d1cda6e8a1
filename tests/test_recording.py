from __future__ import annotations

import threading

from sqlalchemy import Engine, text

from db import UNASSIGNED_SINK, record_granules
from tests.factories import granule_record


def _count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


def test_records_new_granules_and_schedules_one_delivery_per_sink(engine: Engine) -> None:
    records = [granule_record(i) for i in range(5)]
    with engine.begin() as conn:
        inserted = record_granules(conn, records, ["sqs", "redis"])
    assert sorted(inserted) == sorted(r.id for r in records)
    assert _count(engine, "SELECT count(*) FROM granule") == 5
    assert _count(engine, "SELECT count(*) FROM outbox WHERE sink = 'sqs' AND status = 'pending'") == 5
    assert _count(engine, "SELECT count(*) FROM outbox WHERE sink = 'redis'") == 5
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM granule WHERE id = :id"), {"id": records[0].id}).mappings().one()
    assert row["filename"] == records[0].filename
    assert row["sensing_start"] == records[0].sensing_start
    assert row["checksum"] == records[0].checksum and row["size"] == records[0].size


def test_duplicates_in_batch_and_across_batches_are_recorded_once(engine: Engine) -> None:
    first, second = granule_record(1), granule_record(2)
    with engine.begin() as conn:
        assert sorted(record_granules(conn, [first, first, second], ["sqs"])) == sorted([first.id, second.id])
    with engine.begin() as conn:
        # Seen again, by another source: nothing changes, nothing is scheduled.
        again = granule_record(1, source="subscription")
        assert record_granules(conn, [again, granule_record(3)], ["sqs"]) == [granule_record(3).id]
    assert _count(engine, "SELECT count(*) FROM granule") == 3
    assert _count(engine, "SELECT count(*) FROM outbox") == 3
    assert _count(engine, f"SELECT count(*) FROM granule WHERE id = '{first.id}' AND source = 'search'") == 1


def test_rollback_records_nothing(engine: Engine) -> None:
    try:
        with engine.begin() as conn:
            record_granules(conn, [granule_record(1)], ["sqs"])
            raise RuntimeError("crash after the insert, before commit")
    except RuntimeError:
        pass
    assert _count(engine, "SELECT count(*) FROM granule") == 0
    assert _count(engine, "SELECT count(*) FROM outbox") == 0


def test_unassigned_sink_when_none_configured(engine: Engine) -> None:
    with engine.begin() as conn:
        record_granules(conn, [granule_record(1)], [UNASSIGNED_SINK])
    assert _count(engine, f"SELECT count(*) FROM outbox WHERE sink = '{UNASSIGNED_SINK}'") == 1


def test_two_connections_recording_the_same_ids_at_once(engine: Engine) -> None:
    """The second transaction waits on the first's uncommitted rows, then inserts nothing."""
    records = [granule_record(i) for i in range(200)]
    first_inserted = threading.Event()
    results: dict[str, list[str]] = {}

    def first() -> None:
        with engine.begin() as conn:
            results["first"] = record_granules(conn, records, ["sqs"])
            first_inserted.set()
            # Hold the transaction open while the second one runs into the same ids.
            conn.execute(text("SELECT pg_sleep(0.5)"))

    def second() -> None:
        first_inserted.wait(5)
        with engine.begin() as conn:
            results["second"] = record_granules(conn, list(reversed(records)), ["sqs"])

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results["first"]) == 200
    assert results["second"] == []
    assert _count(engine, "SELECT count(*) FROM granule") == 200
    assert _count(engine, "SELECT count(*) FROM outbox") == 200


def test_many_concurrent_writers_same_ids(engine: Engine) -> None:
    records = [granule_record(i) for i in range(50)]
    barrier = threading.Barrier(8)
    inserted: list[str] = []
    lock = threading.Lock()

    def writer() -> None:
        barrier.wait(5)
        with engine.begin() as conn:
            ids = record_granules(conn, records, ["sqs"])
        with lock:
            inserted.extend(ids)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(inserted) == sorted(r.id for r in records)
    assert _count(engine, "SELECT count(*) FROM outbox") == 50
