"""Delivery sinks: where recorded granules are announced. Each sink is a small adapter over one client."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from link_fetcher.settings import Settings


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    id: str  # the granule id: consumers dedupe on it
    body: dict[str, Any]
    group: str  # ordering group for FIFO queues (the tile)
    recorded_at: dt.datetime | None = None  # when the granule was recorded: the CloudEvent `time`


class SinkUnavailable(RuntimeError):
    """The sink refused or could not take the batch as a whole (down, unreachable, misconfigured)."""


class Sink(Protocol):
    name: str

    def send(self, messages: Sequence[Message]) -> dict[str, str]:
        """Deliver a batch (≤ 10). Return {message id: error} for the entries refused; raise SinkUnavailable
        when nothing could be delivered."""
        ...


def build_sinks(settings: Settings) -> list[Sink]:
    """The sinks the settings configure, in the order of Settings.sink_names()."""
    sinks: list[Sink] = []
    for name in settings.sink_names():
        if name == "sqs":
            from link_fetcher.sinks.sqs import SqsSink

            assert settings.to_download_queue_url  # sink_names() lists "sqs" only when it is set
            sinks.append(SqsSink(settings.to_download_queue_url))
        elif name == "redis":
            from link_fetcher.sinks.redis_stream import RedisStreamSink

            sinks.append(RedisStreamSink.from_settings(settings))
    return sinks


@functools.cache
def configured_sinks() -> tuple[Sink, ...]:
    """The sinks of the process's settings, built once (a Lambda container keeps its clients)."""
    from link_fetcher.settings import get_settings

    return tuple(build_sinks(get_settings()))
