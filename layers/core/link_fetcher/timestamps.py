"""Timestamps from outside (CDSE products and deletions, STAC items): which can be kept (SPEC §2, §3, §11).
Pure."""

from __future__ import annotations

import datetime as dt

EARLIEST_YEAR, LATEST_YEAR = 1900, 2200
MAX_UTC_OFFSET = dt.timedelta(hours=14)
MALFORMED = "malformed"  # the skip reason of a product that cannot be read (logs, metrics, reports)


def timestamp_problem(value: dt.datetime) -> str | None:
    """Why a timestamp from outside cannot be kept (None: it can). Checked on the value as given, so that no
    conversion can overflow: every accepted value is also within the `granule` CHECK constraints."""
    offset = value.utcoffset()
    if offset is None:
        return "has no UTC offset"
    if abs(offset) > MAX_UTC_OFFSET:
        minutes = abs(int(offset.total_seconds())) // 60
        sign = "-" if offset < dt.timedelta(0) else "+"
        return f"UTC offset {sign}{minutes // 60:02d}:{minutes % 60:02d} is beyond ±14:00"
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        return f"year {value.year} is outside {EARLIEST_YEAR}..{LATEST_YEAR}"
    return None


def sensing_order_problem(start: dt.datetime | None, end: dt.datetime | None) -> str | None:
    """Why a sensing interval cannot be kept (None: it can): a start after its end is malformed (SPEC §11), and
    the `granule` CHECK refuses it."""
    if start is not None and end is not None and start > end:
        return f"sensing end {end.isoformat()} is before its start {start.isoformat()}"
    return None
