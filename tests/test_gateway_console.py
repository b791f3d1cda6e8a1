"""The ops console rendered in headless Chromium (Debian's package, driven by Playwright): streams, deliveries
and the granules-per-day chart drawn from a real gateway, Redis and Postgres. Saves a screenshot."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import sync_playwright
from sqlalchemy import Engine, text

from db import record_granules
from tests.factories import granule_record
from tests.gateway_server import READ_KEY, gateway_settings, running_gateway

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture
def stream(unique_name: str, redis_url: str) -> Iterator[str]:
    yield unique_name
    redis.Redis.from_url(redis_url).delete(unique_name)


def test_console_shows_streams_deliveries_and_draws_the_chart(engine: Engine, database_url, redis_url, stream) -> None:
    rds = redis.Redis.from_url(redis_url, decode_responses=True)
    for n in range(7):
        rds.xadd(stream, {"n": str(n)})
    rds.xgroup_create(stream, "downloaders", id="0")
    with engine.begin() as conn:
        record_granules(conn, [granule_record(n, platform="S2A" if n % 2 else "S2B") for n in range(9)], ["redis"])
        # Two granules, recorded today, delivered 90 minutes after their publication: today's freshness bar.
        conn.execute(
            text(
                "UPDATE granule SET published = now() - interval '90 minutes' "
                "WHERE id IN (SELECT granule_id FROM outbox WHERE id <= 2)"
            )
        )
        conn.execute(text("UPDATE outbox SET status = 'sent', sent_at = now(), first_sent_at = now() WHERE id <= 2"))
        # One of them deleted by CDSE today: the lifecycle table's row.
        conn.execute(
            text("UPDATE granule SET deleted_at = now(), deletion_cause = 'Corrupted product' WHERE id = :id"),
            {"id": granule_record(8).id},
        )

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "gateway-console.png"
    with running_gateway(gateway_settings(redis_url, database_url)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(f"{url}/#token={READ_KEY}")
            page.wait_for_selector("body[data-loaded=true]", timeout=10_000)
            bars = page.locator("#chart svg rect.bar")
            assert bars.count() == 2  # today: one bar segment per platform
            counts = {bar.get_attribute("data-platform"): bar.get_attribute("data-count") for bar in bars.all()}
            assert counts == {"S2A": "4", "S2B": "5"}
            stream_row = page.locator("#streams tbody tr", has_text=stream)
            assert "downloaders: 0 / 7" in stream_row.inner_text()
            assert page.locator("#deliveries tbody tr").first.inner_text().split()[:4] == ["redis", "7", "2", "0"]
            lifecycle_row = page.locator("#lifecycle tbody tr").first.inner_text().split("\t")
            assert lifecycle_row == [dt.datetime.now(dt.UTC).date().isoformat(), "1", "0", "0", "0"]
            (fresh,) = page.locator("#freshness-chart svg rect.fresh").all()
            assert fresh.get_attribute("data-source") == "search"
            assert 5400 <= float(fresh.get_attribute("data-p95")) < 5460
            freshness_row = page.locator("#freshness tbody tr").first.inner_text().split("\t")
            assert freshness_row[:3] == ["search", "2", "1.5 h"] and freshness_row[-1] == "7"
            assert "#token" not in page.url  # the key left the address bar
            page.screenshot(path=str(screenshot), full_page=True)

            refreshed = browser.new_page()
            refreshed.goto(f"{url}/#token=wrong")
            refreshed.wait_for_selector("#key-form:not([hidden])", timeout=10_000)
            assert refreshed.locator("#status").inner_text() == "unknown API key"
        finally:
            browser.close()
    print(f"console screenshot: {screenshot}")
