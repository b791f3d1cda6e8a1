"""The delivery outbox: lease pending deliveries without double-sending, record outcomes, list and requeue."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import secrets
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypedDict, Unpack, cast

import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from db.models import DeliveryEvent, DeliveryStatus, granule_table
from db.reading import MessageRow

# Deliveries recorded while no sink was configured; bound to the real sinks by the first relay that has some.
UNASSIGNED_SINK = "unassigned"

# What a message is built from, read with each lease: a third of the columns (and not the STAC `item`, kilobytes
# per row) are never in a message, and reading each column back costs the relay CPU per delivery.
MESSAGE_COLUMNS = tuple(column.name for column in granule_table.columns if column.name in MessageRow.__annotations__)

# A relay leases pending deliveries before sending them, in autocommit, many batches per statement, and marks
# each batch after the sink took it (one statement). A lease lives as long as the relay's database session: the
# session holds a PostgreSQL advisory lock on its token (LEASE_LOCK_CLASS, token) and writes the token into
# `leased_by`. A lease whose token no session holds (the relay crashed, or lost its connection) is free to take:
# `pg_try_advisory_xact_lock` succeeds on it, and only for the statement. So a relay that dies repeats at most
# the batch it had sent and not yet marked; what it had leased but not sent goes to the next relay at once.
LEASE_LOCK_CLASS = 0x6C66  # advisory lock key space (classid) of relay tokens; the objid is the token
_TAKE_TOKEN_SQL = text("SELECT pg_try_advisory_lock(:lock_class, :token)")
_END_LEASES_SQL = text("SELECT pg_advisory_unlock(:lock_class, :token)")
# The lease, the marks and the release run on the psycopg connection itself (see `LeaseSession`), hence psycopg's
# placeholders. The lease returns each delivery with its granule's MESSAGE_COLUMNS, oldest first.
_LEASED_COLUMNS = 6  # outbox id, granule id, event, attempts, first_sent_at, previous lease; then MESSAGE_COLUMNS
_LEASE_SQL = f"""
    WITH free AS (
        SELECT o.id, o.leased_by AS previous FROM outbox o
        WHERE o.sink = %(sink)s AND o.status = 'pending' AND o.id > %(after_id)s
          AND o.id <> ALL(%(exclude)s::bigint[])
          AND (%(granule_ids)s::text[] IS NULL OR o.granule_id = ANY(%(granule_ids)s::text[]))
          AND (o.leased_by IS NULL
               OR (o.leased_by <> %(token)s AND pg_try_advisory_xact_lock(%(lock_class)s, o.leased_by)))
        ORDER BY o.id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ), leased AS (
        UPDATE outbox o SET leased_by = %(token)s FROM free
        WHERE o.id = free.id AND o.id = ANY(ARRAY(SELECT id FROM free))  -- the rows through the primary key
        RETURNING o.id, o.granule_id, o.event, o.attempts, o.first_sent_at, free.previous
    )
    SELECT leased.*, {", ".join(f"g.{column}" for column in MESSAGE_COLUMNS)}
    FROM leased LEFT JOIN granule g ON g.id = leased.granule_id
    ORDER BY leased.id
"""
# What a lease took, read again one row at a time when a granule of it cannot be read back (see `collect_lease`).
_LEASED_KEYS_SQL = """
    SELECT id, granule_id, event, attempts, first_sent_at, NULL::bigint FROM outbox
    WHERE sink = %(sink)s AND leased_by = %(token)s AND status = 'pending' AND id > %(after_id)s
    ORDER BY id
"""
_MESSAGE_COLUMNS_SQL = f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM granule WHERE id = %s"
_MARK_SQL = """
    UPDATE outbox o SET
        status = CASE
            WHEN r.error IS NULL THEN 'sent'
            WHEN r.final OR (r.attempted AND o.attempts + 1 >= %(max_attempts)s) THEN 'failed'
            ELSE 'pending' END,
        attempts = o.attempts + CASE WHEN r.attempted THEN 1 ELSE 0 END,
        last_error = r.error,
        sent_at = CASE WHEN r.error IS NULL THEN now() END,
        first_sent_at = CASE WHEN r.error IS NULL THEN coalesce(o.first_sent_at, now()) ELSE o.first_sent_at END,
        leased_by = NULL,
        updated_at = now()
    FROM unnest(%(ids)s::bigint[], %(errors)s::text[], %(attempted)s::boolean[], %(final)s::boolean[])
        AS r(id, error, attempted, final)
    WHERE o.id = r.id AND o.id = ANY(%(ids)s::bigint[])  -- the second: the rows through the primary key
"""
# The usual batch, every message accepted: the same effect as _MARK_SQL with one array to bind instead of four.
_MARK_SENT_SQL = """
    UPDATE outbox SET status = 'sent', attempts = attempts + 1, last_error = NULL, sent_at = now(),
        first_sent_at = coalesce(first_sent_at, now()), leased_by = NULL, updated_at = now()
    WHERE id = ANY(%(ids)s::bigint[])
"""
_RELEASE_SQL = "UPDATE outbox SET leased_by = NULL WHERE id = ANY(%(ids)s::bigint[]) AND leased_by = %(token)s"


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    outbox_id: int
    sink: str
    attempts: int
    granule_id: str
    granule: MessageRow | None  # None when unreadable
    event: DeliveryEvent = DeliveryEvent.FOUND  # what the message announces: the granule found, or deleted
    first_sent_at: dt.datetime | None = None  # set once this sink took the granule (a requeued delivery)
    # Why the granule row cannot be read back (a value written before the range checks existed): retrying
    # cannot help, so the delivery fails at once instead of stopping every relay.
    unreadable: str | None = None
    # The token of a relay that had leased it and ended without marking it (crashed, lost its connection).
    previous_lease: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    outbox_id: int
    error: str | None  # None: the sink accepted the message
    # False when the sink was down as a whole: that is not the message's fault, so it costs no attempt.
    attempted: bool = True
    # True when no retry can succeed (the granule cannot be read or turned into a message): failed at once.
    final: bool = False


def assign_unbound(conn: Connection, sinks: Sequence[str]) -> int:
    """Turn each pending delivery recorded with no sink into one delivery per configured sink."""
    if not sinks:
        return 0
    result = conn.execute(
        text(
            """
            WITH unbound AS (
                DELETE FROM outbox WHERE sink = :unassigned AND status = 'pending'
                RETURNING granule_id, event, created_at
            )
            INSERT INTO outbox (granule_id, event, sink, created_at)
            SELECT unbound.granule_id, unbound.event, sinks.sink, unbound.created_at
            FROM unbound CROSS JOIN unnest(CAST(:sinks AS text[])) AS sinks(sink)
            ON CONFLICT (granule_id, sink, event) DO NOTHING
            """
        ),
        {"unassigned": UNASSIGNED_SINK, "sinks": list(sinks)},
    )
    return result.rowcount


def lease_token(conn: Connection) -> int:
    """This session's relay token, taken once per database connection (it lives in the pooled connection's
    `info`): a random number whose advisory lock the session holds until it closes."""
    token = conn.info.get("relay_lease_token")
    while token is None:
        candidate = secrets.randbelow(2**31 - 1) + 1
        if conn.execute(_TAKE_TOKEN_SQL, {"lock_class": LEASE_LOCK_CLASS, "token": candidate}).scalar_one():
            token = conn.info["relay_lease_token"] = candidate
    return int(token)


def end_leases(conn: Connection, token: int) -> None:
    """Give up this session's token: every delivery it leases and has not marked is free to take again."""
    conn.execute(_END_LEASES_SQL, {"lock_class": LEASE_LOCK_CLASS, "token": token})
    conn.info.pop("relay_lease_token", None)


class LeaseNarrowing(TypedDict, total=False):
    """What a lease may leave out (see `lease_pending`): none of it by default."""

    exclude: Sequence[int]
    granule_ids: Sequence[str] | None
    after_id: int


class LeaseSession:
    """A relay's lease, mark and release statements on one autocommit connection (psycopg 3, db.engine's driver).

    Within `pipelined()` (psycopg's pipeline mode) `send_lease` and `send_mark` return as soon as PostgreSQL has
    the statement, which runs there while the relay builds and sends its next batch; `sync()` returns once every
    statement sent has run and committed (a pipeline's sync ends the implicit transaction its statements ran in).
    Outside it, each statement has committed when `send_…` returns. While pipelined, nothing else may use the
    connection: SQLAlchemy reads a result as soon as it sends the statement, and a pipeline has none to give yet.
    """

    def __init__(self, conn: Connection) -> None:
        self._dbapi = cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)
        self._pipeline: psycopg.Pipeline | None = None
        self._lease = self._dbapi.cursor(binary=True)  # binary rows: the lease reads back a granule per delivery
        self._other = self._dbapi.cursor()
        self._lease_params: dict[str, Any] = {}
        self._sent: tuple[str, Mapping[str, Any] | Sequence[Any]] | None = None  # the latest, for its error
        self._unsynced = False  # pipelined: a statement was sent since the last sync

    @contextlib.contextmanager
    def pipelined(self) -> Iterator[None]:
        """Pipeline mode; leaving it waits for whatever was still in flight."""
        with self._errors(), self._dbapi.pipeline() as pipeline:
            self._pipeline = pipeline
            try:
                yield
            finally:
                self._pipeline, self._unsynced = None, False

    def sync(self) -> None:
        """Wait until every statement sent has run and committed (pipelined; otherwise they already have)."""
        if self._pipeline is not None and self._unsynced:
            with self._errors():
                self._pipeline.sync()
            self._unsynced = False

    def send_lease(self, sink: str, token: int, limit: int, **narrowed: Unpack[LeaseNarrowing]) -> None:
        """Send `lease_pending`'s statement; `collect_lease` returns what it leased."""
        self._lease_params = {"sink": sink, "token": token, "after_id": narrowed.get("after_id", 0)}
        granule_ids = narrowed.get("granule_ids")
        params = {
            **self._lease_params,
            "exclude": _bigint_array(narrowed.get("exclude", ())),
            "granule_ids": None if granule_ids is None else list(granule_ids),
            "lock_class": LEASE_LOCK_CLASS,
            "limit": limit,
        }
        self._execute(self._lease, _LEASE_SQL, params)

    def collect_lease(self) -> list[ClaimedDelivery]:
        """The deliveries the lease sent last leased (see `lease_pending`), once it has committed."""
        self.sync()
        try:
            rows = self._lease.fetchall()
        except psycopg.DataError:
            return self._reread_lease()
        sink = self._lease_params["sink"]
        return [
            _claimed(sink, keys, dict(zip(MESSAGE_COLUMNS, granule, strict=True))) for *keys, granule in _split(rows)
        ]

    def _reread_lease(self) -> list[ClaimedDelivery]:
        """The lease's deliveries when a granule of them cannot be read back: each granule read alone, so that only
        the unreadable ones fail. The lease's own rows say which deliveries it took (not whose lease they were
        taken over from: a ReceiptSink is then sent those again, which its consumers absorb as any repeat)."""
        sink = self._lease_params["sink"]
        claimed = []
        for keys in self._fetch(_LEASED_KEYS_SQL, self._lease_params):
            try:
                granule = self._fetch(_MESSAGE_COLUMNS_SQL, (keys[1],))
            except psycopg.DataError as exc:
                claimed.append(_claimed(sink, keys, None, unreadable=f"granule row unreadable: {exc}"))
                continue
            claimed.append(
                _claimed(sink, keys, dict(zip(MESSAGE_COLUMNS, granule[0], strict=True)) if granule else None)
            )
        return claimed

    def send_mark(self, outcomes: Sequence[DeliveryOutcome], max_attempts: int) -> None:
        """Send `mark_outcomes`' statement; the batch is marked once `sync()` returns."""
        if not outcomes:
            return
        ids = _bigint_array([outcome.outbox_id for outcome in outcomes])
        if all(outcome.error is None and outcome.attempted for outcome in outcomes):
            self._execute(self._other, _MARK_SENT_SQL, {"ids": ids})
            return
        params = {
            "ids": ids,
            "errors": [outcome.error for outcome in outcomes],
            "attempted": [outcome.attempted for outcome in outcomes],
            "final": [outcome.final for outcome in outcomes],
            "max_attempts": max_attempts,
        }
        self._execute(self._other, _MARK_SQL, params)

    def release(self, token: int, outbox_ids: Sequence[int]) -> None:
        """`release_leases`, committed when it returns."""
        if outbox_ids:
            self._execute(self._other, _RELEASE_SQL, {"ids": _bigint_array(outbox_ids), "token": token})
            self.sync()

    def _fetch(self, statement: str, params: Mapping[str, Any] | Sequence[Any]) -> list[tuple[Any, ...]]:
        self._execute(self._other, statement, params)
        self.sync()
        return self._other.fetchall()

    def _execute(self, cursor: psycopg.Cursor[Any], statement: str, params: Mapping[str, Any] | Sequence[Any]) -> None:
        self._sent = (statement, params)
        try:  # not `_errors()`: a relay runs this for every batch, and a context manager costs CPU each time
            cursor.execute(statement, params)
        except psycopg.Error as exc:
            raise DBAPIError.instance(statement, params, exc, psycopg.Error) from exc
        self._unsynced = self._pipeline is not None

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """psycopg's errors raised as SQLAlchemy raises them from a statement it ran (OperationalError for a lost
        connection, …), so that callers handle one family."""
        try:
            yield
        except psycopg.Error as exc:
            statement, params = self._sent or ("", {})
            raise DBAPIError.instance(statement, params, exc, psycopg.Error) from exc


def _split(rows: list[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """Each lease row as (its _LEASED_COLUMNS key values…, the granule's values)."""
    for row in rows:
        yield (*row[:_LEASED_COLUMNS], row[_LEASED_COLUMNS:])


def _claimed(
    sink: str, keys: Sequence[Any], granule: dict[str, Any] | None, unreadable: str | None = None
) -> ClaimedDelivery:
    outbox_id, granule_id, event, attempts, first_sent_at, previous = keys
    readable = granule is not None and granule["id"] is not None  # no granule: it was deleted meanwhile
    return ClaimedDelivery(
        outbox_id=outbox_id,
        sink=sink,
        attempts=attempts,
        granule_id=granule_id,
        granule=cast(MessageRow, granule) if readable else None,
        event=DeliveryEvent(event),
        first_sent_at=first_sent_at,
        unreadable=unreadable,
        previous_lease=previous,
    )


def lease_pending(
    conn: Connection, sink: str, token: int, limit: int, **narrowed: Unpack[LeaseNarrowing]
) -> list[ClaimedDelivery]:
    """Lease up to `limit` pending deliveries of `sink` to `token` (this session's, see `lease_token`), oldest
    first, skipping those another live session leases or holds and the outbox ids in `exclude` (refused earlier
    in this run); only those of `granule_ids` if given. One statement, which also reads the granules' rows.

    Run it in autocommit: the lease must be visible to other relays while this one sends. `mark_outcomes` ends
    each lease; `release_leases` gives back what was leased and not sent. A relay does the same through a
    `LeaseSession`, which overlaps them with its sends.

    `after_id`: a relay draining a backlog passes the last id it leased, so each lease starts where the last
    ended whatever index the planner picks. Without it, a plan that walks the primary key (chosen when the
    statistics still see most rows pending) re-reads every row sent so far at each lease: quadratic.

    A granule psycopg cannot read back (a value stored before the range checks) does not fail the lease: that
    delivery comes with `unreadable` set.
    """
    session = LeaseSession(conn)
    session.send_lease(sink, token, limit, **narrowed)
    return session.collect_lease()


def release_leases(conn: Connection, token: int, outbox_ids: Sequence[int]) -> None:
    """Give back deliveries leased to `token` and not sent (a relay stopping early), for any relay to take."""
    LeaseSession(conn).release(token, outbox_ids)


def mark_outcomes(conn: Connection, outcomes: Sequence[DeliveryOutcome], max_attempts: int) -> None:
    """Record a batch's outcomes in one statement, and end their leases: accepted → sent (and first sent, once);
    refused → attempts+1, failed at the limit; not attempted (sink down) → stays pending with its error; final →
    failed now."""
    LeaseSession(conn).send_mark(outcomes, max_attempts)


def _bigint_array(values: Sequence[int]) -> str:
    """`values` as a PostgreSQL array literal, for a `::bigint[]` parameter: a relay binds one per batch, and
    writing the integers out costs less CPU than psycopg's list adaptation."""
    return "{" + ",".join(map(str, values)) + "}"


def retry_failed(conn: Connection, sinks: Sequence[str] | None = None) -> int:
    """Put failed deliveries back to pending with a fresh attempt budget."""
    result = conn.execute(
        text(
            """
            UPDATE outbox SET status = 'pending', attempts = 0, updated_at = now()
            WHERE status = 'failed' AND (CAST(:sinks AS text[]) IS NULL OR sink = ANY(CAST(:sinks AS text[])))
            """
        ),
        {"sinks": list(sinks) if sinks is not None else None},
    )
    return result.rowcount


def requeue(conn: Connection, granule_ids: Sequence[str], sinks: Sequence[str]) -> int:
    """Schedule the granules' `found` announcement again (one pending delivery per sink), whatever its past state."""
    if not granule_ids or not sinks:
        return 0
    result = conn.execute(
        text(
            """
            INSERT INTO outbox (granule_id, sink)
            SELECT ids.id, sinks.sink
            FROM unnest(CAST(:ids AS text[])) AS ids(id) CROSS JOIN unnest(CAST(:sinks AS text[])) AS sinks(sink)
            ON CONFLICT (granule_id, sink, event) DO UPDATE
                SET status = 'pending', attempts = 0, last_error = NULL, sent_at = NULL, updated_at = now()
            """
        ),
        {"ids": list(granule_ids), "sinks": list(sinks)},
    )
    return result.rowcount


_COUNT_ALL_SQL = text("SELECT sink, status, count(*) FROM outbox GROUP BY sink, status")
# Through ix_outbox_status_sink_created: the rows of those states only, not the sent history (which only grows).
_COUNT_IN_SQL = text(
    "SELECT sink, status, count(*) FROM outbox WHERE status = ANY(CAST(:statuses AS text[])) GROUP BY sink, status"
)


def count_by_status(conn: Connection, statuses: Sequence[DeliveryStatus] | None = None) -> dict[tuple[str, str], int]:
    """{(sink, status): deliveries}, in every state or only in `statuses`."""
    if statuses is None:
        rows = conn.execute(_COUNT_ALL_SQL)
    else:
        rows = conn.execute(_COUNT_IN_SQL, {"statuses": [str(status) for status in statuses]})
    return {(sink, status): count for sink, status, count in rows}


def oldest_pending_age(conn: Connection) -> float:
    """Seconds since the oldest pending delivery was scheduled; 0 when nothing is pending."""
    age = conn.execute(
        text("SELECT EXTRACT(EPOCH FROM now() - min(created_at)) FROM outbox WHERE status = 'pending'")
    ).scalar_one()
    return float(age or 0)


class DeliveryListing(TypedDict):
    """One delivery as `link-fetcher pending` prints it (a JSON line) and the ops console lists it."""

    id: str  # the granule id
    sink: str
    status: str  # a DeliveryStatus value
    attempts: int
    last_error: str | None
    created_at: str  # ISO 8601
    updated_at: str
    filename: str


def list_deliveries(conn: Connection, statuses: Sequence[DeliveryStatus]) -> Iterator[DeliveryListing]:
    """Deliveries in the given states, oldest first, streamed (a backlog can be large)."""
    result = (
        conn.execution_options(stream_results=True, yield_per=1000)
        .execute(
            text(
                """
            SELECT o.granule_id AS id, o.sink, o.status, o.attempts, o.last_error, o.created_at, o.updated_at,
                   g.filename
            FROM outbox o JOIN granule g ON g.id = o.granule_id
            WHERE o.status = ANY(CAST(:statuses AS text[]))
            ORDER BY o.id
            """
            ),
            {"statuses": [str(status) for status in statuses]},
        )
        .mappings()
    )
    for row in result:
        yield DeliveryListing(
            id=row["id"],
            sink=row["sink"],
            status=row["status"],
            attempts=row["attempts"],
            last_error=row["last_error"],
            created_at=row["created_at"].isoformat(),
            updated_at=row["updated_at"].isoformat(),
            filename=row["filename"],
        )
