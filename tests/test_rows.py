"""Rows after the database are typed: db.GranuleRow names every column of db.models.granule_table, with its type."""

from __future__ import annotations

import datetime as dt
import typing

import pytest
from sqlalchemy import Engine

from db import GranuleRow, granule_table, load_granules, record_granules
from db.outbox import MESSAGE_COLUMNS
from tests.factories import granule_record


@pytest.mark.unit
def test_the_row_type_names_every_column() -> None:
    assert list(GranuleRow.__annotations__) == [column.name for column in granule_table.columns]
    assert GranuleRow.__optional_keys__ == {"item"}  # the relay reads every column but the item
    assert set(MESSAGE_COLUMNS) == set(GranuleRow.__required_keys__)


def test_a_row_read_back_has_the_declared_keys_and_types(engine: Engine) -> None:
    with engine.begin() as conn:
        (granule_id,) = record_granules(conn, [granule_record(1)], ["sqs"])
        rows, unreadable = load_granules(conn, [granule_id, "never-recorded"], MESSAGE_COLUMNS)
    assert unreadable == {} and list(rows) == [granule_id]
    row = rows[granule_id]
    hints = typing.get_type_hints(GranuleRow)
    assert set(row) == set(MESSAGE_COLUMNS)
    for name, value in row.items():
        expected = typing.get_args(hints[name]) or (hints[name],)
        assert value is None or isinstance(value, tuple(t for t in expected if isinstance(t, type))), name
    assert isinstance(row["first_seen"], dt.datetime) and row["downloaded"] is False
