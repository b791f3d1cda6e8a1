"""`status` figures (SPEC §10): freshness per source matches the recorded publication, recording and delivery
times; the queries read through indexes bounded by what they report, not the whole history."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

import pytest
from sqlalchemy import Engine, text

from db import record_granules
from db.outbox import _COUNT_ALL_SQL, _COUNT_IN_SQL
from db.status import (
    _DELETED_SQL,
    _OLDEST_PENDING_SQL,
    _REPROCESSED_SQL,
    _SOURCES_SQL,
    FRESHNESS_PER_DAY_SQL,
    FRESHNESS_SQL,
    freshness,
    status_document,
)
from link_fetcher.cli import main
from tests.factories import granule_record
from tests.fakes.sqs_endpoint import SqsEndpoint

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def _set_times(engine: Engine, rows: Sequence[tuple[str, dt.datetime, dt.datetime, dt.datetime | None]]) -> None:
    """(id, published, first_seen, first delivery or None) for each granule; the delivery to sink `sqs`."""
    with engine.begin() as conn:
        for granule_id, published, seen, delivered in rows:
            conn.execute(
                text("UPDATE granule SET published = :p, first_seen = :s WHERE id = :id"),
                {"p": published, "s": seen, "id": granule_id},
            )
            if delivered is not None:
                conn.execute(
                    text(
                        "UPDATE outbox SET status = 'sent', sent_at = :d, first_sent_at = :d "
                        "WHERE granule_id = :id AND sink = 'sqs'"
                    ),
                    {"d": delivered, "id": granule_id},
                )


def test_freshness_per_source_matches_the_recorded_times(engine: Engine) -> None:
    search = [granule_record(i) for i in range(20)]
    pushed = [granule_record(100 + i, source="subscription") for i in range(3)]
    with engine.begin() as conn:
        record_granules(conn, [*search, *pushed], ["sqs", "redis"])
    hour = dt.timedelta(hours=1)
    rows = []
    for i, record in enumerate(search):  # published i minutes before recording, delivered 10 s after
        seen = NOW - 2 * hour + dt.timedelta(minutes=i)
        rows.append((record.id, seen - dt.timedelta(minutes=i), seen, seen + dt.timedelta(seconds=10)))
    rows.append((pushed[0].id, NOW - hour - dt.timedelta(seconds=30), NOW - hour, NOW - hour + dt.timedelta(seconds=5)))
    rows.append((pushed[1].id, NOW - hour, NOW - hour + dt.timedelta(seconds=2), None))  # not delivered yet
    rows.append((pushed[2].id, NOW - 3 * hour, NOW - 30 * hour, NOW - 29 * hour))  # recorded before the window
    _set_times(engine, rows)
    with engine.begin() as conn:  # a later delivery to the second sink does not change the first delivery
        conn.execute(
            text(
                "UPDATE outbox SET status = 'sent', first_sent_at = :t WHERE sink = 'redis' AND granule_id IN "
                "(SELECT granule_id FROM outbox WHERE sink = 'sqs' AND first_sent_at IS NOT NULL)"
            ),
            {"t": NOW},
        )

    with engine.connect() as conn:
        figures = freshness(conn, now=NOW)
    fresh = sorted(60 * i + 10 for i in range(20))
    assert figures["search"]["count"] == 20 and figures["search"]["recorded"] == 20
    assert figures["search"]["p50_seconds"] == pytest.approx((fresh[9] + fresh[10]) / 2)
    assert figures["search"]["p95_seconds"] == pytest.approx(fresh[18] + 0.05 * (fresh[19] - fresh[18]))
    assert figures["search"]["max_seconds"] == fresh[-1] == 1150
    assert figures["search"]["recording"]["max_seconds"] == 1140
    assert figures["search"]["relaying"] == {"p50_seconds": 10, "p95_seconds": 10, "max_seconds": 10}
    assert figures["subscription"] == {
        "count": 1,
        "p50_seconds": 35,
        "p95_seconds": 35,
        "max_seconds": 35,
        "recorded": 2,
        "undelivered": 1,
        "recording": {"p50_seconds": 16, "p95_seconds": 28.6, "max_seconds": 30},
        "relaying": {"p50_seconds": 5, "p95_seconds": 5, "max_seconds": 5},
    }


def test_status_document_has_every_section(engine: Engine) -> None:
    with engine.begin() as conn:
        record_granules(conn, [granule_record(i) for i in range(3)], ["sqs"])
        conn.execute(text("UPDATE outbox SET created_at = now() - interval '10 minutes' WHERE id = 1"))
        conn.execute(
            text(
                "INSERT INTO granule_count (date, platform, available_links, fetched_links, completed) "
                "VALUES ('2024-09-12', 'S2A', 3, 3, true)"
            )
        )
    with engine.connect() as conn:
        document = status_document(conn)
    assert set(document) == {"days", "deliveries", "freshness", "deleted", "reprocessed", "sources"}
    assert document["days"] == [
        {
            "day": "2024-09-12",
            "platform": "S2A",
            "available": 3,
            "fetched": 3,
            "completed": True,
            "last_fetched_time": None,
        }
    ]
    (sqs,) = document["deliveries"].values()
    assert (sqs["pending"], sqs["sent"], sqs["failed"]) == (3, 0, 0) and 600 <= sqs["oldest_pending_seconds"] < 660
    assert document["freshness"]["search"]["undelivered"] == 3 and document["freshness"]["search"]["count"] == 0
    json.dumps(document)  # JSON-ready as it is


def test_status_counts_deletions_and_reprocessings_per_day(engine: Engine) -> None:
    """Two recorded granules deleted (announced), one deletion of a product never recorded (remembered), and a
    reprocessing under `replace` (its earlier granule deleted as superseded): each counted on its day."""
    from db import DeletionRecord, record_deletions

    first = granule_record(1, filename="S2A_MSIL1C_20200808T010311_N0209_R045_T54PXA_20200808T022033.SAFE")
    again = granule_record(2, filename="S2A_MSIL1C_20200808T010311_N0500_R045_T54PXA_20230413T212505.SAFE")
    others = [granule_record(i) for i in range(3, 5)]
    day = NOW - dt.timedelta(days=1)

    def deletion(granule_id: str, name: str = "x.SAFE", remember: bool = False) -> DeletionRecord:
        return DeletionRecord(granule_id, name, day, "Corrupted product", "https://d", remember=remember)

    with engine.begin() as conn:
        record_granules(conn, [first, *others], ["sqs"])
        record_granules(conn, [again], ["sqs"], reprocessed_policy="replace")
        deletions = [deletion(g.id, g.filename) for g in others] + [deletion("never-recorded", remember=True)]
        record_deletions(conn, deletions, ["sqs"])
        conn.execute(text("UPDATE granule SET deleted_at = :d WHERE id = :id"), {"d": NOW, "id": first.id})
    with engine.connect() as conn:
        document = status_document(conn, now=NOW + dt.timedelta(hours=1))
    assert document["deleted"] == [
        {"day": day.date().isoformat(), "announced": 2, "remembered": 1},
        {"day": NOW.date().isoformat(), "announced": 1, "remembered": 0},  # the superseded one
    ]
    today = dt.datetime.now(dt.UTC).date().isoformat()  # the reprocessing was recorded now
    with engine.connect() as conn:
        assert status_document(conn)["reprocessed"] == [{"day": today, "reprocessed": 1, "replaced": 1}]


def _scans(node: dict) -> list[tuple[str, str]]:
    found = [(node["Node Type"], node.get("Relation Name", ""))] if "Scan" in node["Node Type"] else []
    for child in node.get("Plans", []):
        found += _scans(child)
    return found


def test_the_status_queries_read_indexes_not_the_history(engine: Engine) -> None:
    """40,000 granules recorded over 40 days and delivered to two sinks, 200 of them in the last day: the planner
    (statistics fresh, sequential scans allowed) reads the day's granules through ix_granule_first_seen, their
    deliveries through the outbox's unique index, and counts through ix_outbox_status_sink_created; no
    sequential scan of granule or outbox."""
    records = [granule_record(i) for i in range(40_000)]
    with engine.begin() as conn:
        for start in range(0, len(records), 5_000):
            record_granules(conn, records[start : start + 5_000], ["sqs", "redis"])
        conn.execute(
            text(
                "UPDATE granule SET first_seen = now() - (abs(hashtext(id)) % 40) * interval '1 day' "
                "- interval '1 minute', published = now() - interval '41 days'"
            )
        )
        conn.execute(text("UPDATE outbox SET status = 'sent', sent_at = now(), first_sent_at = now() WHERE id > 50"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE granule"))
        conn.execute(text("VACUUM ANALYZE outbox"))
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=24)
    statements = [
        (FRESHNESS_SQL, {"since": since}),
        (FRESHNESS_PER_DAY_SQL, {"since": since - dt.timedelta(days=2)}),
        (_OLDEST_PENDING_SQL, {}),
        (_COUNT_IN_SQL, {"statuses": ["pending", "failed"]}),
        (_COUNT_ALL_SQL, {}),
        (_DELETED_SQL, {"since": since - dt.timedelta(days=30)}),
        (_REPROCESSED_SQL, {"since": since - dt.timedelta(days=30)}),
        (_SOURCES_SQL, {"since": since}),
    ]
    with engine.connect() as conn:
        assert 800 <= freshness(conn)["search"]["recorded"] <= 1_200  # one day in 40
        for statement, params in statements:
            plan = conn.execute(text(f"EXPLAIN (FORMAT JSON) {statement.text}"), params).scalar_one()
            plan = plan if isinstance(plan, list) else json.loads(plan)
            scans = _scans(plan[0]["Plan"])
            assert scans and not [s for s in scans if s[0] == "Seq Scan"], (statement.text, scans)


def test_cli_status_json_reports_what_the_relay_delivered(cli_env, engine: Engine, capsys) -> None:
    """As a user: granules recorded, relayed to SQS with `link-fetcher relay`, then `status --json`; the
    freshness it prints is what the recorded publication and delivery times give."""
    published = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=45)
    records = [granule_record(i, published=published - dt.timedelta(minutes=i)) for i in range(15)]
    with engine.begin() as conn:
        record_granules(conn, records, ["sqs"])
    with SqsEndpoint() as endpoint:
        cli_env.setenv("AWS_ENDPOINT_URL", endpoint.url)
        cli_env.setenv("TO_DOWNLOAD_QUEUE_URL", endpoint.queue_url("q"))
        assert main(["relay"]) == 0
        capsys.readouterr()
        assert main(["status", "--json"]) == 0
        document = json.loads(capsys.readouterr().out)
        assert main(["status"]) == 0
        tables = capsys.readouterr().out
    with engine.connect() as conn:
        expected = sorted(
            seconds
            for (seconds,) in conn.execute(
                text(
                    "SELECT extract(epoch FROM o.first_sent_at - g.published) "
                    "FROM granule g JOIN outbox o ON o.granule_id = g.id"
                )
            )
        )
    search = document["freshness"]["search"]
    assert search["count"] == 15 and search["undelivered"] == 0
    assert search["p50_seconds"] == pytest.approx(float(expected[7]), abs=0.1)
    assert search["max_seconds"] == pytest.approx(float(expected[-1]), abs=0.1)
    assert 45 * 60 <= search["p50_seconds"] < 53 * 60 + 60 and 59 * 60 <= search["max_seconds"] < 60 * 60 + 60
    assert document["deliveries"]["sqs"] == {"pending": 0, "sent": 15, "failed": 0, "oldest_pending_seconds": 0.0}
    assert "freshness, last 24 h" in tables and "search" in tables
    assert document["sources"] == [{"source": "search", "also": [], "granules": 15}]
    assert "granules recorded per source" in tables
