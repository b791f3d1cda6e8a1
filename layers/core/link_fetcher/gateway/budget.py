"""Fair keys: a budget of entries per key (a token bucket), so one key's reads cannot take the gateway from others.

Requests are charged up front for what they ask (a read's `count`, a GraphQL query's cost) and refused with 429
and Retry-After when the key's bucket cannot cover it, before any work is done; what a read did not return is
given back. Feeds (WebSockets, subscriptions) are charged for what they deliver and wait while the key is in debt.
One event loop: no locks needed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable

from link_fetcher.gateway.auth import Principal
from link_fetcher.gateway.errors import GatewayError


@dataclasses.dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class EntryBudget:
    def __init__(self, per_second: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, principal: Principal) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.setdefault(principal.name, _Bucket(self.burst, now))
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.per_second)
        bucket.at = now
        return bucket

    def take(self, principal: Principal, entries: int) -> None:
        """Charge `entries` now, or 429 with Retry-After (seconds until the bucket holds them)."""
        bucket = self._bucket(principal)
        needed = min(float(entries), self.burst)
        if bucket.tokens < needed:
            wait = max(1, math.ceil((needed - bucket.tokens) / self.per_second))
            raise GatewayError(
                429,
                f"{principal.name} is over its budget of {self.per_second:g} entries/s "
                f"(GATEWAY_KEY_ENTRIES_PER_SECOND): retry in {wait} s",
                {"Retry-After": str(wait)},
            )
        bucket.tokens -= entries

    def give_back(self, principal: Principal, entries: int) -> None:
        if entries > 0:
            bucket = self._bucket(principal)
            bucket.tokens = min(self.burst, bucket.tokens + entries)

    async def spend(self, principal: Principal, entries: int) -> None:
        """Charge what a feed delivered; while the key is in debt, wait until it is not."""
        bucket = self._bucket(principal)
        bucket.tokens -= entries
        if bucket.tokens < 0:
            await asyncio.sleep(-bucket.tokens / self.per_second)
