"""One statement in flight on a relay's connection: sent now, its result collected later (libpq's asynchronous API,
through psycopg's documented `pq` and `Transformer` layers). PostgreSQL runs the mark of the batch just sent, or the
next lease, on its own CPU while the relay builds and sends the next batch; the relay collects the result right
before that batch leaves the process, so nothing about what a crash can repeat changes.

SQLAlchemy runs everything else on these connections; it has no asynchronous execution for a synchronous engine,
and threads would not do: a second thread waiting for a statement gets the GIL back only when the sending thread
blocks, which is after the request is built, so nothing would overlap.
"""

from __future__ import annotations

import select
from collections.abc import Sequence
from typing import Any, cast

import psycopg
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, StatementError

Row = tuple[Any, ...]


class RowsUnreadable(Exception):
    """Some rows of a result hold values psycopg cannot read back (a value stored before the range checks)."""

    def __init__(self, rows: list[Row], errors: dict[int, str]) -> None:
        super().__init__(f"{len(errors)} of {len(rows)} rows unreadable")
        self.rows = rows  # an unreadable row holds only its leading key columns (see `collect`)
        self.errors = errors  # {row index: why}


class InFlight:
    """At most one statement in flight on `conn` (an autocommit SQLAlchemy connection with psycopg 3): `send`
    returns at once, `collect` waits for its result. The connection must not be used otherwise between the two."""

    def __init__(self, conn: Connection) -> None:
        self._dbapi = cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)  # db.engine's driver
        self._statement: bytes | None = None  # the one in flight
        self._params: Sequence[Any] = ()

    @property
    def busy(self) -> bool:
        return self._statement is not None

    def send(self, statement: bytes, params: Sequence[Any]) -> None:
        """Send `statement` (`$1`-style placeholders) with `params` adapted as psycopg adapts them; its result comes
        in binary format."""
        if self._statement is not None:
            raise RuntimeError("a statement is already in flight on this connection")
        pgconn = self._dbapi.pgconn
        transformer = Transformer.from_context(self._dbapi)
        try:
            values = transformer.dump_sequence(params, [PyFormat.AUTO] * len(params))
            pgconn.send_query_params(
                statement,
                values,
                param_types=transformer.types,
                param_formats=transformer.formats,
                result_format=pq.Format.BINARY,
            )
            while pgconn.flush():  # a nonblocking connection: the rest of the statement once the socket takes it
                select.select([], [pgconn.socket], [])
        except psycopg.Error as exc:
            raise _wrapped(statement, params, exc) from exc
        self._statement, self._params = statement, params

    def collect(self, key_columns: int = 0) -> list[Row]:
        """Wait for the statement in flight and return its rows ([] for none, or when nothing was in flight).
        Raises what SQLAlchemy raises for a database error, and `RowsUnreadable` (the statement did run) when rows
        hold values psycopg cannot read back: each of those then holds only its first `key_columns` values."""
        if self._statement is None:
            return []
        statement, params = self._statement, self._params
        self._statement, self._params = None, ()
        pgconn = self._dbapi.pgconn
        try:
            pgconn.consume_input()
            while pgconn.is_busy():
                select.select([pgconn.socket], [], [])
                pgconn.consume_input()
            results = []
            while (result := pgconn.get_result()) is not None:
                results.append(result)
        except psycopg.Error as exc:
            raise _wrapped(statement, params, exc) from exc
        for result in results:
            if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
                error = psycopg.errors.error_from_result(result, encoding=self._dbapi.info.encoding)
                raise _wrapped(statement, params, error) from error
        return _rows(self._dbapi, results[-1], key_columns) if results else []


def _rows(dbapi: psycopg.Connection[Any], result: pq.abc.PGresult, key_columns: int) -> list[Row]:
    transformer = Transformer.from_context(dbapi)
    transformer.set_pgresult(result)
    try:
        return transformer.load_rows(0, result.ntuples, tuple)
    except psycopg.DataError:
        keys = Transformer.from_context(dbapi)
        keys.set_loader_types([result.ftype(column) for column in range(key_columns)], pq.Format.BINARY)
        rows: list[Row] = []
        errors: dict[int, str] = {}
        for index in range(result.ntuples):
            try:
                rows.append(transformer.load_row(index, tuple))
            except psycopg.DataError as exc:
                rows.append(keys.load_sequence([result.get_value(index, column) for column in range(key_columns)]))
                errors[index] = str(exc)
        raise RowsUnreadable(rows, errors) from None


def _wrapped(statement: bytes, params: Sequence[Any], error: psycopg.Error) -> StatementError:
    """The error as SQLAlchemy raises it from a statement it ran (OperationalError for a lost connection, ...)."""
    return DBAPIError.instance(statement.decode(), list(params), error, psycopg.Error)
