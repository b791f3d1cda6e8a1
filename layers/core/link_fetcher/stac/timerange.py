"""Time ranges and the windows a STAC search is cut into. Pure.

A range is half-open, `[start, end)`, like a SPEC day: an item sensed exactly at `end` belongs to the next
range, so consecutive runs (a watch's lookback on a schedule) neither miss nor repeat an instant.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator

from link_fetcher.text import utc_iso

_DURATION_PART = re.compile(r"(\d+)([wdhms])")
_DURATION = re.compile(r"^(?:\d+[wdhms])+$")
_UNIT_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}


class TimeRangeError(ValueError):
    """A datetime range or duration the user gave cannot be used; the message says why, in one line."""


@dataclasses.dataclass(frozen=True, slots=True)
class TimeRange:
    start: dt.datetime
    end: dt.datetime  # exclusive

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise TimeRangeError(f"the range end {utc_iso(self.end)} is not after its start {utc_iso(self.start)}")

    def contains(self, instant: dt.datetime) -> bool:
        return self.start <= instant < self.end

    def as_stac(self) -> str:
        """The STAC `datetime` parameter. STAC intervals are closed: items at `end` come back and are dropped
        by `contains`."""
        return f"{utc_iso(self.start)}/{utc_iso(self.end)}"

    def __str__(self) -> str:
        return f"{utc_iso(self.start)}/{utc_iso(self.end)}"


def parse_duration(text: str) -> dt.timedelta:
    """`6h`, `1d`, `90m`, `1d12h`, `2w` → timedelta (positive)."""
    compact = text.strip().lower().replace(" ", "")
    if not _DURATION.match(compact):
        raise TimeRangeError(f"bad duration {text!r}: use a number and a unit (w, d, h, m, s), e.g. 6h or 1d12h")
    seconds = sum(int(count) * _UNIT_SECONDS[unit] for count, unit in _DURATION_PART.findall(compact))
    if seconds <= 0:
        raise TimeRangeError(f"bad duration {text!r}: it must be longer than zero")
    return dt.timedelta(seconds=seconds)


def _parse_instant(text: str, *, is_end: bool) -> dt.datetime:
    """An RFC 3339 datetime (no zone = UTC) or a date: a start date is its midnight, an end date includes the
    whole day (the next midnight, exclusive)."""
    value = text.strip()
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
            return midnight + dt.timedelta(days=1) if is_end else midnight
        instant = dt.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise TimeRangeError(f"bad date or datetime {text!r}: use e.g. 2024-09-01 or 2024-09-01T06:00:00Z") from None
    return instant.replace(tzinfo=dt.UTC) if instant.tzinfo is None else instant.astimezone(dt.UTC)


def parse_range(text: str, *, now: dt.datetime) -> TimeRange:
    """`START/END` (END `..` = now); a single date means that whole day."""
    parts = text.split("/")
    if len(parts) == 1 and len(text.strip()) == 10:
        parts = [text, text]
    if len(parts) != 2 or not parts[0].strip() or parts[0].strip() == "..":
        raise TimeRangeError(f"bad datetime range {text!r}: use START/END, e.g. 2024-09-01/2024-09-10")
    start = _parse_instant(parts[0], is_end=False)
    end = now if parts[1].strip() in ("", "..") else _parse_instant(parts[1], is_end=True)
    return TimeRange(start, end)


def lookback_range(lookback: dt.timedelta, *, now: dt.datetime) -> TimeRange:
    return TimeRange(now - lookback, now)


def windows(time_range: TimeRange, size: dt.timedelta) -> Iterator[TimeRange]:
    """Consecutive windows of `size` covering the range, the last one cut at the range end."""
    start = time_range.start
    while start < time_range.end:
        end = min(start + size, time_range.end)
        yield TimeRange(start, end)
        start = end


def window_count(time_range: TimeRange, size: dt.timedelta) -> int:
    return -(-(time_range.end - time_range.start) // size)
