"""The shared formatting helpers: one-line errors and UTC instants."""

from __future__ import annotations

import datetime as dt

import pytest

from link_fetcher.text import one_line, utc_iso

pytestmark = pytest.mark.unit


def test_one_line_keeps_the_first_line_with_text() -> None:
    error = OSError('\n  connection to server at "db" failed:   Connection refused\n\tIs the server running?')
    assert one_line(error) == 'connection to server at "db" failed: Connection refused'


def test_one_line_of_an_empty_error_is_its_type() -> None:
    assert one_line(TimeoutError()) == "TimeoutError"
    assert one_line(ValueError("  \n ")) == "ValueError"
    assert one_line("") == ""


def test_one_line_cuts_a_long_text() -> None:
    body = "x" * 1000
    assert one_line(body) == "x" * 300
    assert one_line(RuntimeError(body), limit=20) == "x" * 20


def test_utc_iso_writes_utc_with_z_from_any_offset() -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    assert utc_iso(dt.datetime(2024, 9, 12, 16, 52, 6, 118000, tzinfo=paris)) == "2024-09-12T14:52:06.118000Z"
    assert utc_iso(dt.datetime(2024, 9, 12, tzinfo=dt.UTC)) == "2024-09-12T00:00:00Z"
