"""Rows after the database are typed: db.GranuleRow names every column of db.models.granule_table, with its type;
db.MessageRow the columns the relay reads to build messages."""

from __future__ import annotations

import datetime as dt
import typing

import pytest
from sqlalchemy import Engine

from db import GranuleRow, MessageRow, granule_table, load_granules, record_granules
from db.outbox import MESSAGE_COLUMNS
from tests.factories import granule_record


@pytest.mark.unit
def test_the_row_type_names_every_column() -> None:
    assert sorted(GranuleRow.__annotations__) == sorted(column.name for column in granule_table.columns)
    assert GranuleRow.__optional_keys__ == {"item"}
    assert tuple(c.name for c in granule_table.columns if c.name in MessageRow.__required_keys__) == MESSAGE_COLUMNS
    assert set(MessageRow.__annotations__) < set(GranuleRow.__annotations__)


def test_a_row_read_back_has_the_declared_keys_and_types(engine: Engine) -> None:
    with engine.begin() as conn:
        (granule_id,) = record_granules(conn, [granule_record(1)], ["sqs"])
        columns = [column.name for column in granule_table.columns]
        rows, unreadable = load_granules(conn, [granule_id, "never-recorded"], columns)
    assert unreadable == {} and list(rows) == [granule_id]
    row = rows[granule_id]
    hints = typing.get_type_hints(GranuleRow)
    assert set(row) == set(columns)
    for name, value in row.items():
        hint = hints[name]
        expected = (typing.get_origin(hint),) if typing.get_origin(hint) is list else typing.get_args(hint) or (hint,)
        assert value is None or isinstance(value, tuple(t for t in expected if isinstance(t, type))), name
    assert isinstance(row["first_seen"], dt.datetime) and row["downloaded"] is False
