"""HTTP sessions for CDSE and STAC APIs: a timeout on every call, retries with exponential backoff and jitter
on 429 (honouring Retry-After), 5xx and dropped connections, then a clear error."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

log = logging.getLogger(__name__)

# (connect, read) seconds.
DEFAULT_TIMEOUT = (10, 60)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "link-fetcher/0.1"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class HttpError(RuntimeError):
    """A request that failed for good: a non-retryable status, or retries used up. Message is one line."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _RetryingSession(requests.Session):
    """Every call with `timeout` (unless given one), retried as `retry` says, at most `pool_size` connections kept
    per host."""

    def __init__(self, timeout: tuple[float, float], retry: Retry, pool_size: int) -> None:
        super().__init__()
        self._timeout = timeout
        adapter = HTTPAdapter(max_retries=retry, pool_connections=pool_size, pool_maxsize=pool_size)
        self.mount("https://", adapter)
        self.mount("http://", adapter)
        self.headers["User-Agent"] = USER_AGENT

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)


def make_session(
    *,
    attempts: int = 6,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    methods: Iterable[str] = ("GET", "HEAD"),
    pool_size: int = 10,
) -> requests.Session:
    """A session whose calls time out and retry transient failures (`attempts` tries in all).

    urllib3 retries connection errors and 429/5xx answers (sleeping Retry-After when given, else
    backoff * 2^n with jitter). A connection dropped while the body is read is not covered there:
    `get_json` retries that.
    """
    retry = Retry(
        total=attempts - 1,
        connect=attempts - 1,
        read=attempts - 1,
        status=attempts - 1,
        other=0,
        allowed_methods=frozenset(method.upper() for method in methods),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff,
        backoff_max=max_backoff,
        backoff_jitter=backoff,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    return _RetryingSession(timeout, retry, pool_size)


def with_retries[T](
    call: Callable[[], T],
    *,
    what: str,
    attempts: int = 6,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `call`, retrying a response body cut off mid-read (the one failure urllib3 does not retry)."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            if exc.args and isinstance(exc.args[0], MaxRetryError):
                # urllib3 has already retried this connection failure: retrying it again multiplies the wait.
                raise HttpError(f"{what}: connection failed: {exc.args[0].reason}") from exc
            if attempt == attempts:
                raise HttpError(f"{what}: connection failed {attempts} times: {type(exc).__name__}") from exc
            delay = backoff * 2 ** (attempt - 1) * (1 + random.random())
            log.warning("%s: %s, retry %d/%d in %.1fs", what, type(exc).__name__, attempt, attempts - 1, delay)
            sleep(delay)
    raise AssertionError("unreachable")


def get_json(session: requests.Session, url: str, *, params: Any = None, what: str | None = None) -> Any:
    """GET a JSON document; HttpError (one line, with the status) when the server says no for good."""
    label = what or url

    def call() -> Any:
        response = session.get(url, params=params)
        raise_for_status(response, label)
        return response.json()

    return with_retries(call, what=label)


def raise_for_status(response: requests.Response, what: str) -> None:
    if response.status_code < 400:
        return
    detail = response.text.strip().replace("\n", " ")[:300]
    raise HttpError(
        f"{what}: HTTP {response.status_code} {response.reason or ''} {detail}".rstrip(), response.status_code
    )


def check_url(url: str, what: str) -> str:
    """HTTPS only, except plain http to this machine (test fakes, local mirrors)."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        return url
    raise ValueError(f"{what}: refusing {parts.scheme or 'relative'} URL {url!r} (https only)")
