from __future__ import annotations

import json

from sqlalchemy import Engine, text

from db import DeliveryOutcome, DeliveryStatus, claim_pending, count_by_status, mark_outcomes, record_granules
from db.outbox import _COUNT_IN_SQL
from tests.factories import granule_record


def _record(engine: Engine, count: int) -> None:
    with engine.begin() as conn:
        record_granules(conn, [granule_record(i) for i in range(count)], ["sqs"])


def test_claim_after_a_cursor_starts_there(engine: Engine) -> None:
    _record(engine, 30)
    with engine.begin() as conn:
        first = claim_pending(conn, "sqs", 10)
        after = claim_pending(conn, "sqs", 10, after_id=first[-1].outbox_id)
    assert [d.outbox_id for d in first] == list(range(1, 11))
    assert [d.outbox_id for d in after] == list(range(11, 21))


def _rows_visited(node: dict) -> int:
    own = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
    return max([own, *(_rows_visited(child) for child in node.get("Plans", []))])


def test_the_backlog_count_reads_the_unsent_rows_not_the_history(engine: Engine) -> None:
    """Relays count what is left after every run: that must not grow with the deliveries ever sent."""
    _record(engine, 3000)
    with engine.begin() as conn:
        conn.execute(text("UPDATE outbox SET status = 'sent' WHERE id > 5"))
        conn.execute(text("UPDATE outbox SET status = 'failed' WHERE id <= 2"))
        conn.execute(text("ANALYZE outbox"))
    unsent = [DeliveryStatus.PENDING, DeliveryStatus.FAILED]
    with engine.connect() as conn:
        assert count_by_status(conn, unsent) == {("sqs", "pending"): 3, ("sqs", "failed"): 2}
        assert count_by_status(conn)[("sqs", "sent")] == 2995
        plan = conn.execute(
            text(f"EXPLAIN (ANALYZE, FORMAT JSON) {_COUNT_IN_SQL.text}"), {"statuses": [str(s) for s in unsent]}
        ).scalar_one()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    assert _rows_visited(plan[0]["Plan"]) <= 20


def test_draining_with_a_cursor_does_not_reread_sent_rows_whatever_the_plan(engine: Engine) -> None:
    """Statistics taken while everything was pending make the planner walk the primary key; the cursor keeps
    each claim to about one batch of rows instead of every row sent so far."""
    _record(engine, 2000)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE outbox"))
    cursor = 0
    with engine.begin() as conn:
        for _ in range(150):  # 1,500 sent
            claimed = claim_pending(conn, "sqs", 10, after_id=cursor)
            mark_outcomes(conn, [DeliveryOutcome(d.outbox_id, None) for d in claimed], max_attempts=10)
            cursor = claimed[-1].outbox_id
    with engine.begin() as conn:
        plan = conn.execute(
            text(
                "EXPLAIN (ANALYZE, FORMAT JSON) SELECT o.id FROM outbox o WHERE o.sink = 'sqs' "
                "AND o.status = 'pending' AND o.id > :after ORDER BY o.id LIMIT 10 FOR UPDATE SKIP LOCKED"
            ),
            {"after": cursor},
        ).scalar_one()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    assert _rows_visited(plan[0]["Plan"]) <= 20
