"""Two days of CDSE through the twin (twin/month.py): the synthesized stack on moto, its schedules on the simulated
clock, notifications through the push route, the downloader draining the queue, under every fault the month plays;
the audit ends clean and the cost is estimated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twin.month import MonthOptions, ensure_cdk_out, run_month

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def test_two_days_of_cdse_through_the_stack_lose_nothing_and_double_nothing(server_url: str, tmp_path: Path) -> None:
    options = MonthOptions(
        days=2, tail_days=2, cdk_out=ensure_cdk_out(), server_url=server_url, output=tmp_path / "month.json", quiet=True
    )
    result = run_month(options)
    audit = result.audit
    assert not audit.missed, result.report
    assert not audit.recorded_twice and not audit.recorded_out_of_scope, result.report
    assert audit.stuck == 0 and audit.ok, result.report
    assert audit.recorded >= 0.9 * audit.in_scope > 50
    assert audit.deliveries["sent"] >= audit.recorded and set(audit.messages) >= {"1"}
    assert audit.freshness, result.report
    played = result.figures["faults"]
    for fault in ("CDSE outage", "link_fetcher timed out mid-day", "relay killed mid-batch"):
        assert played.get(fault), (fault, played)
    assert any(name.startswith("database restart") for name in played), played
    assert played["SQS SendMessageBatch throttled"] > 0
    written = json.loads((tmp_path / "month.json").read_text())
    assert written["audit"]["ok"] is True
    assert written["cost"]["total"] > written["cost"]["idle_total"] > 0
