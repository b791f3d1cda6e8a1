from __future__ import annotations

import contextlib
import json
import time

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from db import (
    DeliveryOutcome,
    DeliveryStatus,
    LeaseSession,
    count_by_status,
    lease_pending,
    lease_token,
    mark_outcomes,
    record_granules,
    release_leases,
)
from db.outbox import _COUNT_IN_SQL, _LEASE_SQL, _MARK_SENT_SQL, _MARK_SQL, LEASE_LOCK_CLASS
from tests.factories import granule_record


def _record(engine: Engine, count: int) -> None:
    with engine.begin() as conn:
        record_granules(conn, [granule_record(i) for i in range(count)], ["sqs"])


def _autocommit(engine: Engine) -> Connection:
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def test_lease_after_a_cursor_starts_there(engine: Engine) -> None:
    _record(engine, 30)
    with _autocommit(engine) as conn:
        token = lease_token(conn)
        first = lease_pending(conn, "sqs", token, 10)
        after = lease_pending(conn, "sqs", token, 10, after_id=first[-1].outbox_id)
    assert [d.outbox_id for d in first] == list(range(1, 11))
    assert [d.outbox_id for d in after] == list(range(11, 21))


def _wait_until_session_ends(conn: Connection, token: int) -> None:
    """The server ends a session a moment after its client went away; its advisory lock goes with it."""
    deadline = time.monotonic() + 10
    held = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :cls AND objid = :token "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    while conn.execute(held, {"cls": LEASE_LOCK_CLASS, "token": token}).scalar_one() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_lease_holds_while_its_session_lives_and_ends_with_it(engine: Engine) -> None:
    """What a relay leased and has not marked is never leased by another while the relay's session is alive
    (even after the lease committed); the moment that session ends (crash, lost connection) it is free."""
    _record(engine, 30)
    first, second = _autocommit(engine), _autocommit(engine)
    token = lease_token(first)
    assert lease_token(first) == token and lease_token(second) != token  # one token per session, held
    leased = [d.outbox_id for d in lease_pending(first, "sqs", token, 20)]
    other = lease_token(second)
    assert [d.outbox_id for d in lease_pending(second, "sqs", other, 30)] == list(range(21, 31))
    release_leases(second, other, list(range(21, 31)))
    assert [d.outbox_id for d in lease_pending(second, "sqs", other, 30)] == list(range(21, 31))
    release_leases(second, other, list(range(21, 31)))
    mark_outcomes(first, [DeliveryOutcome(outbox_id, None) for outbox_id in leased[:10]], max_attempts=10)
    first.invalidate()  # the relay holding 11..20, leased and not sent, dies
    _wait_until_session_ends(second, token)
    retaken = lease_pending(second, "sqs", other, 30)
    assert [d.outbox_id for d in retaken] == list(range(11, 31))
    second.close()


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
    with _autocommit(engine) as conn:
        token = lease_token(conn)
        for _ in range(150):  # 1,500 sent
            claimed = lease_pending(conn, "sqs", token, 10, after_id=cursor)
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


def _deliveries(conn: Connection) -> dict[int, tuple]:
    rows = conn.execute(
        text("SELECT id, status, attempts, last_error, sent_at, first_sent_at, leased_by FROM outbox ORDER BY id")
    )
    return {row[0]: tuple(row[1:]) for row in rows}


def test_a_batch_all_accepted_and_a_mixed_batch_are_marked_alike(engine: Engine) -> None:
    """The all-accepted batch takes a one-array statement: the same effect on every column as the general one,
    first delivery time kept when a requeued delivery is sent again."""
    _record(engine, 4)
    with _autocommit(engine) as conn:
        token = lease_token(conn)
        leased = [d.outbox_id for d in lease_pending(conn, "sqs", token, 4)]
        mark_outcomes(conn, [DeliveryOutcome(leased[0], "throttled"), DeliveryOutcome(leased[1], None)], 10)
        mark_outcomes(conn, [DeliveryOutcome(i, None) for i in leased[2:]], 10)
        after_first = _deliveries(conn)
        assert after_first[leased[0]][:4] == ("pending", 1, "throttled", None)
        for outbox_id in leased[1:]:
            status, attempts, error, sent_at, first_sent_at, leased_by = after_first[outbox_id]
            assert (status, attempts, error, leased_by) == ("sent", 1, None, None)
            assert sent_at is not None and first_sent_at == sent_at
        # The refused one sent on the next try (all accepted); a sent one requeued and sent again.
        conn.execute(text("UPDATE outbox SET status = 'pending' WHERE id = :id"), {"id": leased[2]})
        again = [d.outbox_id for d in lease_pending(conn, "sqs", token, 4)]
        assert again == [leased[0], leased[2]]
        mark_outcomes(conn, [DeliveryOutcome(i, None) for i in again], 10)
        after_second = _deliveries(conn)
    assert after_second[leased[0]][:3] == ("sent", 2, None)
    assert after_second[leased[0]][4] == after_second[leased[0]][3]  # first delivered now
    resent = after_second[leased[2]]
    assert resent[0] == "sent" and resent[4] == after_first[leased[2]][4] < resent[3]  # first delivery kept


def test_lease_and_mark_read_only_their_rows_whatever_the_table_size(engine: Engine) -> None:
    """Each batch's mark (and each lease) finds its rows through the primary key: with a hash join on a sequential
    scan, the planner's choice for a small table, every batch would cost a read of the whole outbox."""
    _record(engine, 3000)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE outbox"))
        token = lease_token(conn)
        leased = [d.outbox_id for d in lease_pending(conn, "sqs", token, 10)]
        lease = {"sink": "sqs", "after_id": 10, "exclude": "{}", "granule_ids": None, "token": token}
        lease |= {"lock_class": LEASE_LOCK_CLASS, "limit": 100}  # after id 10, the next 100
        ids = "{" + ",".join(map(str, leased)) + "}"
        mark = {"ids": ids, "errors": [None] * 10, "attempted": [True] * 10, "final": [False] * 10, "max_attempts": 10}
        statements = ((_LEASE_SQL, lease), (_MARK_SQL, mark), (_MARK_SENT_SQL, {"ids": ids}))
        cursor = conn.connection.dbapi_connection.cursor()
        for statement, params in statements:
            cursor.execute("EXPLAIN (FORMAT JSON) " + statement, params)
            ((plan,),) = cursor.fetchall()
            plan = plan if isinstance(plan, list) else json.loads(plan)
            assert "Seq Scan" not in json.dumps(plan), plan


def _statuses(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT status FROM outbox ORDER BY id")).scalars())


def test_a_pipelined_session_commits_what_it_sent_when_it_syncs(engine: Engine) -> None:
    """A relay's mark runs while it builds its next batch, and has committed once `sync` returns; a lease's rows
    come back committed."""
    _record(engine, 10)
    with _autocommit(engine) as conn:
        token = lease_token(conn)
        session = LeaseSession(conn)
        with session.pipelined():
            session.send_lease("sqs", token, 10)
            leased = session.collect_lease()
            assert [d.outbox_id for d in leased] == list(range(1, 11)) and leased[0].granule is not None
            session.send_mark([DeliveryOutcome(d.outbox_id, None) for d in leased], max_attempts=10)
            assert _statuses(engine) == ["pending"] * 10  # sent, not yet committed
            session.sync()
            assert _statuses(engine) == ["sent"] * 10
        assert conn.execute(text("SELECT 1")).scalar_one() == 1  # SQLAlchemy has the connection back


@pytest.mark.parametrize("pipelined", [True, False])
def test_a_failed_statement_raises_as_sqlalchemy_raises_and_the_connection_goes_on(
    engine: Engine, pipelined: bool
) -> None:
    with _autocommit(engine) as conn:
        session = LeaseSession(conn)
        pipeline = session.pipelined() if pipelined else contextlib.nullcontext()
        with pytest.raises(DBAPIError, match="LIMIT must not be negative"), pipeline:
            session.send_lease("sqs", 1, -1)
            session.collect_lease()
        assert conn.execute(text("SELECT 1")).scalar_one() == 1


def test_a_connection_lost_with_a_statement_in_flight_raises_operational_error(engine: Engine) -> None:
    _record(engine, 1)
    with _autocommit(engine) as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        session = LeaseSession(conn)
        with pytest.raises(OperationalError), session.pipelined():
            session.send_mark([DeliveryOutcome(1, None)], max_attempts=10)
            with engine.connect() as other:
                assert other.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}).scalar_one()
            session.sync()
        conn.invalidate()
    assert _statuses(engine) == ["pending"]  # never committed
