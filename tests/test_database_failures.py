"""What the database did, in one line (issue 26 item 6): a relay whose connection the server ends mid-run says it
lost the connection, not that it cannot connect; a server that cannot be reached says it cannot connect.
Real PostgreSQL errors: a refused connection, pg_terminate_backend under a statement and under a commit, and
under the relay itself through the CLI."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from db.outbox import LEASE_LOCK_CLASS
from link_fetcher.cli import main
from link_fetcher.database import database_failure
from tests.factories import record

WHERE = "database x at h:5432"


def _error(action) -> DBAPIError:
    with pytest.raises(DBAPIError) as caught:
        action()
    return caught.value


def _terminate(engine: Engine, pid: int) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid})


def test_a_server_that_cannot_be_reached() -> None:
    error = _error(lambda: create_engine("postgresql+psycopg://postgres@127.0.0.1:1/postgres").connect())
    assert database_failure(error, WHERE) == f"cannot connect to {WHERE}: Connection refused"


@pytest.mark.parametrize("during", ["statement", "commit"])
def test_a_session_the_server_ended(engine: Engine, during: str) -> None:
    def use_a_terminated_session() -> None:
        with engine.connect() as conn:
            _terminate(engine, conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
            if during == "statement":
                conn.execute(text("SELECT 1"))
            else:
                conn.commit()

    failure = database_failure(_error(use_a_terminated_session), WHERE)
    assert failure is not None and failure.startswith(f"lost the connection to {WHERE} while using it: ")
    assert "cannot connect" not in failure


def test_other_errors_and_non_database_errors(engine: Engine) -> None:
    def missing_table() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT * FROM nowhere"))

    assert database_failure(_error(missing_table), WHERE).startswith(f"{WHERE} is not migrated")  # type: ignore[union-attr]
    assert database_failure(ValueError("x"), WHERE) is None


@pytest.fixture
def relay_loses_its_connection(cli_env, engine: Engine, monkeypatch) -> None:
    """30 deliveries to SQS; the server ends the relay's session once the first batch was sent."""
    from link_fetcher.sinks.sqs import SqsSink

    record(engine, 30, ["sqs"])
    cli_env.setenv("TO_DOWNLOAD_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/q")
    sent: list[int] = []

    def send(self: SqsSink, messages, before_send=None) -> dict[str, str]:
        if before_send is not None:
            before_send()
        sent.append(len(messages))
        if len(sent) == 1:
            with engine.connect() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid, 10000) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND classid = :lock_class AND pid <> pg_backend_pid() "
                        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    ),
                    {"lock_class": LEASE_LOCK_CLASS},
                )
        return {}

    monkeypatch.setattr(SqsSink, "send", send)


def test_the_relay_lambda_logs_the_lost_connection_and_fails(relay_loses_its_connection, capsys) -> None:
    import types

    from lambdas.relay import handler

    context = types.SimpleNamespace(
        function_name="relay", memory_limit_in_mb=256, invoked_function_arn="arn:aws:lambda:x", aws_request_id="r1"
    )
    with pytest.raises(DBAPIError):
        handler.handler({}, context)
    logged = [line for line in capsys.readouterr().out.splitlines() if "relay failed" in line]
    assert len(logged) == 1 and "lost the connection to database" in logged[0] and "cannot connect" not in logged[0]


def test_the_cli_relay_says_its_connection_was_lost_mid_run(relay_loses_its_connection, capsys) -> None:
    assert main(["relay"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: lost the connection to database" in err and "cannot connect" not in err
