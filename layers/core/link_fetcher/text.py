"""How values are written for people and consumers: an error as one line, an instant as UTC with a `Z`."""

from __future__ import annotations

import datetime as dt


def one_line(error: BaseException | str, limit: int = 300) -> str:
    """The first non-empty line of an error (or of a text such as a response body), whitespace collapsed and cut
    at `limit` characters; an exception with no text gives its type's name."""
    for line in str(error).splitlines():
        if words := line.split():
            return " ".join(words)[:limit]
    return type(error).__name__ if isinstance(error, BaseException) else ""


def utc_iso(instant: dt.datetime) -> str:
    """`2024-09-12T14:52:06.118000Z`: RFC 3339 in UTC, as messages, streams and STAC ranges write instants."""
    return instant.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
