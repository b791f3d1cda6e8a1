"""`make twin-stack`: a short run through the synthesized stack, printing what happened.

    python -m twin [--cdk-out cdk.out] [--scale 0.01]

Needs PostgreSQL (DATABASE_URL names the server; a database is created for the run and dropped after) and the
fake CDSE servers of tests/fakes. Polls two publication days through the schedule, pushes one notification
through API Gateway, drains the download queue, and prints each step and the usage AWS would bill.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from twin.month import DEFAULT_SERVER, scratch_database
from twin.twin import Twin


def scalar(url: str, sql: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        value = int(conn.execute(text(sql)).scalar_one())
    engine.dispose()
    return value


def short_run(twin: Twin, url: str, catalogue: object, push_body: bytes) -> None:
    now = twin.clock.now().replace(hour=3, minute=0, second=0, microsecond=0)
    twin.clock.set(now)
    run = twin.run_rule("PollingSchedule")
    print(f"PollingSchedule at {now:%Y-%m-%dT%H:%MZ}: input {run.input} -> {run.status}, "
          f"{run.state_transitions} state transitions, FetchLinks entered {run.entered('FetchLinks')} times, "
          f"{run.seconds:.1f} s")  # fmt: skip
    print(f"  granules recorded: {scalar(url, 'SELECT count(*) FROM granule')}")
    credentials = twin.push_credentials()
    from tests.push_support import basic

    status, body = twin.push(push_body, {"Authorization": basic(credentials["username"], credentials["password"])})
    print(f"POST /events through API Gateway: {status} {body.decode()[:80]}")
    relay = twin.run_rule("RelaySchedule")
    print(f"RelaySchedule -> {relay.status}: {relay.output}")
    drained = twin.drain_downloads(max_batches=3)
    print(f"download queue drained (3 batches at most): {drained.batches} batches, {drained.records} records, "
          f"{drained.succeeded} downloaded, {len(drained.reported_failures)} reported failed "
          "(the fake CDSE serves no product bytes here)")  # fmt: skip
    usage = twin.usage()
    print(f"{'function':<20}{'invocations':>12}{'errors':>8}{'cold':>6}{'seconds':>10}{'GB-s':>10}")
    for name, function in sorted(usage.functions.items()):
        print(f"{name:<20}{function.invocations:>12}{function.errors:>8}{function.cold_starts:>6}"
              f"{function.seconds:>10.2f}{function.billed_gb_seconds:>10.2f}")  # fmt: skip
    for service, actions in sorted(usage.requests.items()):
        print(f"{service:<20}" + ", ".join(f"{action} {count}" for action, count in sorted(actions.items())))
    print(f"API Gateway requests: {usage.api_gateway_requests}; Step Functions state transitions: "
          f"{usage.state_transitions}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twin", description=__doc__.splitlines()[0])
    parser.add_argument("--cdk-out", type=Path, default=Path("cdk.out"))
    parser.add_argument("--scale", type=float, default=0.01, help="time scale of timeouts and waits")
    args = parser.parse_args(argv)
    if not (args.cdk_out / "manifest.json").is_file():
        print(f"{args.cdk_out} holds no synthesized stack: run `make synth` first", file=sys.stderr)
        return 2
    from tests.fakes.cdse_catalogue import FakeCatalogue, day_products
    from tests.push_support import encode, notification

    server = os.environ.get("DATABASE_URL", DEFAULT_SERVER)
    with scratch_database(server, "lf_twin") as url, FakeCatalogue() as catalogue:
        today = dt.datetime.now(dt.UTC).date()
        for days in (1, 2):
            catalogue.add(day_products(today - dt.timedelta(days=days), "S2A", 30))
        print(f"stack {args.cdk_out}/; database {make_url(url).database}; CDSE faked at {catalogue.url}")
        with Twin(args.cdk_out, database_url=url, cdse_base_url=catalogue.url, time_scale=args.scale) as twin:
            print(f"deployed on moto at {twin.endpoint}: rules {', '.join(twin.rules())}; migration Create ran")
            short_run(twin, url, catalogue, encode(notification()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
