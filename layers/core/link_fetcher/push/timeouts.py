"""`serve`'s request deadline: a client must send its whole request (headers and body) within
PUSH_REQUEST_TIMEOUT_SECONDS of its first byte (of connecting, for the first request), or it is answered
408 Request Timeout and disconnected.

uvicorn bounds only the idle time between two requests (`timeout_keep_alive`), not a request arriving slowly:
a client sending a byte a second holds its connection, and a task waiting for the body, for as long as it
likes. The deadline lives in uvicorn's HTTP protocol (asyncio's `data_received` is where bytes arrive), as a
subclass of each of uvicorn's two protocols: it is armed when a request may begin and disarmed once the
protocol has the request's last byte. The application's time is not bounded here.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aws_lambda_powertools import Logger
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from link_fetcher.observability import Service
from link_fetcher.settings import get_settings

# Set in the scope of a request the deadline ended, so the application does not report the disconnection as
# the client's doing (the deadline logs it).
TIMED_OUT = "link_fetcher.timed_out"

log = Logger(service=Service.PUSH)


def timeout_response(seconds: float) -> bytes:
    body = json.dumps({"error": f"request not received within {seconds:g} s"}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class RequestDeadline:
    """Mixed into a uvicorn HTTP protocol (their attributes are what the checks below read): `cycle` is the
    request whose headers arrived last (None before the first), `transport` the connection."""

    # What the protocol classes below have (uvicorn's own attributes).
    cycle: Any
    transport: asyncio.Transport
    timeout_s: float | None = None  # None: PUSH_REQUEST_TIMEOUT_SECONDS
    _deadline: asyncio.TimerHandle | None = None
    _before: Any = None  # the cycle when the deadline was armed: a newer one is the request it times

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first byte of the next request
        super().data_received(data)  # type: ignore[misc]
        cycle = self.cycle
        if self._deadline is not None and cycle is not None and cycle is not self._before and not cycle.more_body:
            self._disarm()  # the whole request is in

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self) -> None:
        seconds = self.timeout_s or get_settings().subscription.push_request_timeout_seconds
        self._before = self.cycle
        self._deadline = asyncio.get_running_loop().call_later(seconds, self._expired, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle if self.cycle is not self._before else None
        answered = cycle is not None and cycle.response_started
        if cycle is not None:
            cycle.scope[TIMED_OUT] = True
        if not answered:
            self.transport.write(timeout_response(seconds))
        log.info(
            "request not received in time: " + ("connection closed" if answered else "answered 408, connection closed"),
            extra={"timeout_seconds": seconds, "reason": "request_timeout", "headers_received": cycle is not None},
        )
        self.transport.close()


class TimedH11Protocol(RequestDeadline, H11Protocol):
    """uvicorn's pure-Python HTTP/1.1 protocol, with the request deadline."""


class TimedHttpToolsProtocol(RequestDeadline, HttpToolsProtocol):
    """uvicorn's httptools (C parser) protocol, with the request deadline: what `serve` runs."""


HTTP_PROTOCOL = f"{__name__}:TimedHttpToolsProtocol"  # for uvicorn.run(http=…), also in worker processes
