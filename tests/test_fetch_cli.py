"""`link-fetcher fetch` as a user runs it: a strict fake CDSE, real PostgreSQL, an SQS endpoint."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import Engine, text

from link_fetcher.cli import main
from tests.factories import allowed_ids
from tests.fakes.cdse_catalogue import FakeCatalogue, day_products
from tests.fakes.sqs_endpoint import SqsEndpoint

DAY = dt.date(2024, 9, 12)


@pytest.fixture
def catalogue(cli_env):
    with FakeCatalogue() as fake:
        cli_env.setenv("CDSE_CATALOGUE_URL", fake.url)
        yield fake


def test_fetch_over_10000_products_with_faults_delivers_each_allowed_one_once(
    cli_env, catalogue: FakeCatalogue, engine: Engine, capsys
) -> None:
    products = day_products(DAY, "S2A", 11_500, allowed_share=0.1)
    neighbours = day_products(DAY - dt.timedelta(days=1), "S2A", 20) + day_products(DAY, "S2B", 20)
    catalogue.add(products + neighbours)
    catalogue.inject("429", "503", "drop")
    with SqsEndpoint() as sqs:
        cli_env.setenv("AWS_ENDPOINT_URL", sqs.url)
        cli_env.setenv("TO_DOWNLOAD_QUEUE_URL", sqs.queue_url("to-download"))
        assert main(["fetch", "--day", "2024-09-12", "--platform", "S2A"]) == 0
        out, err = capsys.readouterr()
        bodies = [json.loads(message["Body"]) for message in sqs.fake.messages("to-download")]
        assert sorted(body["id"] for body in bodies) == sorted(allowed_ids(products))
        assert "2024-09-12" in out and "11500" in out
        assert f"delivered: sqs {len(bodies)}" in err

        before = catalogue.requests_for("S2A")
        assert main(["fetch", "--day", "2024-09-12", "--platform", "S2A"]) == 0
        assert catalogue.requests_for("S2A") - before <= 2
        assert len(sqs.fake.messages("to-download")) == len(bodies)
        assert "unchanged" in capsys.readouterr().out
    with engine.connect() as conn:
        row = conn.execute(text("SELECT available_links, fetched_links, completed FROM granule_count")).one()
    assert tuple(row) == (11_500, 11_500, True)


def test_fetch_days_and_platforms_without_sink_leaves_deliveries_pending(
    cli_env, catalogue: FakeCatalogue, engine: Engine, capsys
) -> None:
    catalogue.add(day_products(DAY, "S2A", 10) + day_products(DAY + dt.timedelta(days=1), "S2C", 5))
    assert main(["fetch", "--day", "2024-09-12", "--to", "2024-09-13", "--platform", "S2A", "--platform", "s2c"]) == 0
    out, err = capsys.readouterr()
    assert out.count("2024-09-1") == 4  # two days x two platforms in the summary
    assert "9 deliveries pending" in err  # 6 + 3 on allowed tiles
    assert main(["status"]) == 0
    assert "granule_count" in capsys.readouterr().out


def test_fetch_bad_usage_exits_2(cli_env, capsys) -> None:
    assert main(["fetch", "--day", "2024-09-12", "--to", "2024-09-11"]) == 2
    assert "--to is before --day" in capsys.readouterr().err
    assert main(["fetch", "--day", "12/09/2024"]) == 2
    assert main(["fetch", "--day", "2024-09-12", "--platform", "S3A"]) == 2


def test_fetch_when_cdse_refuses_is_one_line_and_exit_1(cli_env, catalogue: FakeCatalogue, capsys) -> None:
    cli_env.setenv("CDSE_CATALOGUE_URL", catalogue.url + "/wrong-prefix")
    assert main(["fetch", "--day", "2024-09-12", "--platform", "S2A"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HTTP 404" in err and "run the same command again" in err
    assert "Traceback" not in err
