from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from db import record_granules
from link_fetcher.cli import main
from tests.factories import granule_record


def test_unreachable_database_is_one_line_without_password(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:s3cret@127.0.0.1:1/x")
    assert main(["status"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "127.0.0.1:1" in err and "database x" in err
    assert "s3cret" not in err and "Traceback" not in err


@pytest.mark.unit
def test_bad_configuration_exits_2(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PLATFORMS", "S2A,S9Z")
    assert main(["status"]) == 2
    assert "PLATFORMS" in capsys.readouterr().err
    # A field of a group with a prefix is named by its variable, as the user set it.
    monkeypatch.delenv("PLATFORMS")
    monkeypatch.setenv("CDSE_PAGE_SIZE", "5000")
    assert main(["status"]) == 2
    assert "error: configuration error: CDSE_PAGE_SIZE: Input should be less than or equal to 1000" in (
        capsys.readouterr().err
    )


@pytest.mark.unit
def test_unknown_command_exits_2(capsys) -> None:
    assert main(["no-such-command"]) == 2


def test_status_and_pending(cli_env, engine: Engine, capsys) -> None:
    with engine.begin() as conn:
        ids = record_granules(conn, [granule_record(i) for i in range(3)], ["unassigned"])
    assert main(["pending"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(line["id"] for line in lines) == sorted(ids)
    assert {line["sink"] for line in lines} == {"unassigned"}
    assert all(line["attempts"] == 0 and line["last_error"] is None for line in lines)
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "granule_count" in out and "unassigned" in out


def test_relay_without_sink_is_a_configuration_error(cli_env, engine: Engine, capsys) -> None:
    assert main(["relay"]) == 2
    assert "no sink configured" in capsys.readouterr().err


def test_pending_into_a_pipe_closed_early_ends_without_a_traceback(cli_env, engine: Engine) -> None:
    with engine.begin() as conn:
        record_granules(conn, [granule_record(i) for i in range(3000)], ["unassigned"])
    cli = str(Path(sys.executable).with_name("link-fetcher"))
    reader = subprocess.Popen([cli, "pending"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert json.loads(reader.stdout.readline())["sink"] == "unassigned"
    reader.stdout.close()  # what `| head -1` does
    assert reader.wait(timeout=60) == 1
    assert b"Traceback" not in reader.stderr.read()
