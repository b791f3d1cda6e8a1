"""What the twin reports: a rule's run, a drain of the download queue, and the usage AWS would bill."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import threading
from typing import Any


class Clock:
    """The simulated UTC time: what EventBridge stamps on a scheduled event (`time`), which the polling rule hands
    the state machine as `now` and the date generator takes its days from. Set it, advance it; it never moves by
    itself (the handlers' own wall clock, and PostgreSQL's `now()`, stay the machine's)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = (start or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def set(self, when: dt.datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("the clock is UTC: give an aware datetime")
        with self._lock:
            self._now = when.astimezone(dt.UTC)

    def advance(self, by: dt.timedelta) -> dt.datetime:
        with self._lock:
            self._now += by
            return self._now


@dataclasses.dataclass(frozen=True)
class RuleRun:
    """One firing of a schedule rule: its target's input and how the target ended."""

    rule: str
    target: str  # logical id of the state machine or function
    input: Any
    status: str  # SUCCEEDED, FAILED, TIMED_OUT, ABORTED (executions); SUCCEEDED or FAILED (functions)
    output: Any = None
    error: str | None = None
    cause: str | None = None
    execution_arn: str | None = None
    events: tuple[dict[str, Any], ...] = ()  # the execution's history (type, state name, when)
    seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    def entered(self, state: str) -> int:
        """How many times the execution entered `state` (a Task, Map, Choice…)."""
        return sum(1 for event in self.events if event.get("entered") == state)

    @property
    def state_transitions(self) -> int:
        """Step Functions bills standard workflows per state transition: one per state entered."""
        return sum(1 for event in self.events if event.get("entered"))


@dataclasses.dataclass(frozen=True)
class DrainResult:
    """The SQS event source's work until the queue gave nothing more."""

    batches: int = 0
    records: int = 0
    succeeded: int = 0
    reported_failures: tuple[str, ...] = ()  # message ids the function listed in batchItemFailures
    failed_batches: int = 0  # invocations that ended in an error (their whole batch stays on the queue)
    errors: tuple[dict[str, Any], ...] = ()


@dataclasses.dataclass
class FunctionUsage:
    memory_mb: int
    invocations: int = 0
    errors: int = 0
    cold_starts: int = 0
    seconds: float = 0.0  # wall time of the invocations here

    @property
    def billed_gb_seconds(self) -> float:
        """Lambda's bill: duration rounded up to the millisecond, times the memory in GB."""
        return math.ceil(self.seconds * 1000) / 1000 * self.memory_mb / 1024


@dataclasses.dataclass(frozen=True)
class Usage:
    functions: dict[str, FunctionUsage]  # by lambdas/ folder name
    requests: dict[str, dict[str, int]]  # AWS requests served by moto: service -> action -> count
    api_gateway_requests: int
    state_transitions: int

    def requests_of(self, service: str) -> int:
        """Requests to `service` as moto names it: sqs, secretsmanager, monitoring (CloudWatch), states, s3…"""
        return sum(self.requests.get(service, {}).values())
