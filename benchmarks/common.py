"""Benchmark plumbing: a scratch database on the local server, statement counting, and the fake SQS client."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import boto3
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from db import get_engine
from db.engine import normalise_url
from db.migrate import upgrade_head
from link_fetcher.sinks.sqs import SQS_CLIENT_CONFIG

SERVER_URL = normalise_url(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))


@contextlib.contextmanager
def scratch_database() -> Iterator[Engine]:
    """A migrated database of its own, dropped afterwards."""
    name = f"lf_bench_{secrets.token_hex(4)}"
    admin = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)
    engine = get_engine(url)
    try:
        upgrade_head(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class StatementCounter:
    """Counts the statements an engine sends (each one is a database round trip)."""

    def __init__(self, engine: Engine) -> None:
        self.statements: list[str] = []
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.statements.append(statement.lstrip().split(None, 1)[0].upper())

    def count(self, verb: str | None = None) -> int:
        return sum(1 for s in self.statements if verb is None or s == verb)

    def reset(self) -> None:
        self.statements.clear()


def sqs_client(endpoint_url: str):
    """A client configured as the SQS sink's own, for the benchmark endpoint."""
    return boto3.client(
        "sqs",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=SQS_CLIENT_CONFIG,
    )


@contextlib.contextmanager
def sqs_endpoint_process(latency_ms: float = 0.0) -> Iterator[str]:
    """tests/fakes/sqs_endpoint.py on a free port in a child process (`latency_ms` added to each call), so its
    CPU is not charged to the process measured, as a real queue's would not be; yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.sqs_endpoint", "--port", str(port), "--latency-ms", str(latency_ms)],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise RuntimeError("the SQS endpoint did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        child.terminate()
        child.wait(10)
