"""Delivery sinks: where recorded granules are announced. Each sink is a small adapter over one client."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

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


# Called by a sink right before a batch leaves the process, after the request is built: the relay then waits for
# the previous batch's mark, which PostgreSQL ran meanwhile. What it raises stops the send.
BeforeSend = Callable[[], None]


class Sink(Protocol):
    name: str

    def send(self, messages: Sequence[Message], before_send: BeforeSend | None = None) -> dict[str, str]:
        """Deliver a batch (≤ 10), calling `before_send` (if given) before anything leaves the process. Return
        {message id: error} for the entries refused; raise SinkUnavailable when nothing could be delivered."""
        ...


@runtime_checkable
class ReceiptSink(Sink, Protocol):
    """A sink that keeps, atomically with each batch, a receipt naming the relay that sent it. The relay then
    marks its deliveries sent once per lease instead of once per batch: a relay taking over a dead relay's
    deliveries first asks which of them the sink already holds under that relay's receipt, and sends only the
    others, so no batch is repeated."""

    def send_with_receipt(
        self, messages: Sequence[Message], receipt: str, before_send: BeforeSend | None = None
    ) -> dict[str, str]:
        """`send`, keeping `receipt` for each message id with the batch (all or nothing)."""
        ...

    def received(self, message_ids: Sequence[str], receipt: str) -> set[str]:
        """The ids among `message_ids` the sink holds under `receipt`; SinkUnavailable when it cannot tell."""
        ...

    def forget(self, message_ids: Sequence[str]) -> None:
        """Drop the receipts of deliveries now marked sent (best effort: receipts also expire)."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class SinkKind:
    """A kind of sink: the class that builds it (`module:Class`, with `from_settings(settings)`) and the setting
    that turns it on (a sink is configured when that field of `settings.sinks` is set)."""

    builder: str
    setting: str

    def build(self, settings: Settings) -> Sink:
        module, _, name = self.builder.partition(":")
        # Imported only when configured: a function loads only the clients of its own sinks.
        factory: Callable[[Settings], Sink] = getattr(importlib.import_module(module), name).from_settings
        return factory(settings)


# Every sink, in delivery order. Adding one: a module with its Sink class, and a line here.
SINKS: dict[str, SinkKind] = {
    "sqs": SinkKind("link_fetcher.sinks.sqs:SqsSink", "to_download_queue_url"),
    "redis": SinkKind("link_fetcher.sinks.redis_stream:RedisStreamSink", "redis_url"),
}


def configured_sink_names(settings: Settings) -> list[str]:
    """The sinks the settings turn on, in delivery order."""
    return [name for name, kind in SINKS.items() if getattr(settings.sinks, kind.setting)]


def build_sinks(settings: Settings) -> list[Sink]:
    """The sinks the settings configure, in delivery order."""
    return [SINKS[name].build(settings) for name in configured_sink_names(settings)]


@functools.cache
def configured_sinks() -> tuple[Sink, ...]:
    """The sinks of the process's settings, built once (a Lambda container keeps its clients)."""
    from link_fetcher.settings import get_settings

    return tuple(build_sinks(get_settings()))
