"""Reprocessing (SPEC §9): identity, `supersedes`, and REPROCESSED_POLICY deliver | skip | replace."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

import db
from db import record_granules
from link_fetcher.mission import MISSION
from link_fetcher.relay import relay
from link_fetcher.sinks import BeforeSend, Message
from tests.factories import granule_record
from tests.schema import assert_valid_message

FIRST = "S2A_MSIL1C_20200808T010311_N0209_R045_T54PXA_20200808T022033.SAFE"
REPROCESSED = "S2A_MSIL1C_20200808T010311_N0500_R045_T54PXA_20230413T212505.SAFE"


def granules(engine: Engine) -> dict[str, dict]:
    with engine.connect() as conn:
        result = conn.execute(text("SELECT id, identity, supersedes, deleted_at, deletion_cause FROM granule"))
        return {row["id"]: dict(row) for row in result.mappings()}


def deliveries(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text("SELECT granule_id, event FROM outbox ORDER BY id"))]


class CollectingSink:
    """A sink that keeps what it is sent (the message bodies are what this module checks)."""

    name = "sqs"

    def __init__(self) -> None:
        self.bodies: list[dict] = []

    def send(self, messages: Sequence[Message], before_send: BeforeSend | None = None) -> dict[str, str]:
        if before_send is not None:
            before_send()
        self.bodies.extend(message.body for message in messages)
        return {}


def claimed_bodies(engine: Engine) -> list[dict]:
    """The bodies the relay sends for what is pending (each checked against the schema by conftest)."""
    sink = CollectingSink()
    relay(engine, [sink])
    return sink.bodies


@pytest.mark.parametrize(
    ("name", "identity"),
    [
        (REPROCESSED, "S2A_MSIL1C_20200808T010311_R045_T54PXA"),
        ("S2C_MSIL2A_20250101T101010_N0511_R022_T31UFU_20250101T120000", "S2C_MSIL2A_20250101T101010_R022_T31UFU"),
        ("S2B_10TFK_20210713_0_L2A", None),  # a STAC item id has no identity
        ("S2A_MSIL1C_20200808T010311_N05_R045_T54PXA_20230413T212505.SAFE", None),
    ],
)
def test_identity_is_the_name_without_baseline_and_discriminator(engine, name, identity) -> None:
    with engine.begin() as conn:
        record_granules(conn, [granule_record(0, filename=name)], ["sqs"])
    assert [row["identity"] for row in granules(engine).values()] == [identity]


# Names around the edges of the name grammar: each is a product name, or not, the same for the recorder
# (link_fetcher.mission) as for the grammar migration 0012 filled in the names of existing rows with.
_EDGE_NAMES = [
    REPROCESSED,
    "S2D_MSIL2A_20991231T235959_N9999_R999_T99ZZZ_20991231T235959",
    "S2D_MSIL2C_20991231T235959_N9999_R999_T99ZZZ_20991231T235959",
    "S2E_MSIL1C_20200808T010311_N0500_R045_T54PXA_20230413T212505.SAFE",
    "s2a_msil1c_20200808t010311_n0500_r045_t54pxa_20230413t212505.safe",
    "S2A_MSIL1C_20200808T010311_N0500_R045_T54PXA",  # no trailing discriminator
    "S2A_MSIL1C_20200808T010311_N0500_R045_T54PXA_20230413T212505.SAFE.SAFE",
    "S2A_MSIL1C_20200808T010311_N0500_R045_T54PXA_20230413T212505x",
    "S2A_MSIL1C_20200808T010311_N0500_R045_T54pXA_20230413T212505",
    "S2A_MSIL1C_2020080T0103111_N0500_R045_T54PXA_20230413T212505",
    "xS2A_MSIL1C_20200808T010311_N0500_R045_T54PXA_20230413T212505",
    "S2A_MSIL1C_20200808T010311_N0500_R045_T54PXÄ_20230413T212505",
    "S2A_MSIL1C_20200808T010311_N0500_R045_T54PXA_20230413T21250٣",
    "S2B_10TFK_20210713_0_L2A",
    "",
]


def test_the_migrations_grammar_agrees_with_the_mission(engine) -> None:
    (path,) = (Path(db.__file__).parent / "migrations" / "versions").glob("*_one_product_one_granule.py")
    spec = importlib.util.spec_from_file_location("one_product_one_granule", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    grammar = migration.NAME_GRAMMAR
    statement = text(
        "SELECT CASE WHEN bare ~ :grammar THEN bare END "
        "FROM unnest(CAST(:names AS text[])) WITH ORDINALITY AS names(name, n), "
        "regexp_replace(name, '\\.SAFE$', '') AS bare ORDER BY n"
    )
    with engine.connect() as conn:
        in_sql = conn.scalars(statement, {"names": _EDGE_NAMES, "grammar": grammar}).all()
    assert in_sql == [MISSION.product_name_of(name) for name in _EDGE_NAMES]
    assert sum(name is not None for name in in_sql) == 2  # both sides of the edge are exercised


def _record_both(engine: Engine, policy: str) -> tuple[str, str]:
    first = granule_record(1, filename=FIRST)
    second = granule_record(2, filename=REPROCESSED)
    other = granule_record(3)  # another identity: untouched
    with engine.begin() as conn:
        record_granules(conn, [first, other], ["sqs"], reprocessed_policy=policy)
    with engine.begin() as conn:
        record_granules(conn, [second], ["sqs"], reprocessed_policy=policy)
        record_granules(conn, [second], ["sqs"], reprocessed_policy=policy)  # seen again: nothing more
    return first.id, second.id


def test_deliver_policy_announces_the_reprocessing_with_supersedes(engine) -> None:
    first, second = _record_both(engine, "deliver")
    rows = granules(engine)
    assert rows[second]["supersedes"] == first and rows[first]["supersedes"] is None
    assert rows[first]["deleted_at"] is None
    assert [event for _, event in deliveries(engine)] == ["found"] * 3
    bodies = {body["id"]: body for body in claimed_bodies(engine)}
    assert bodies[second]["supersedes"] == first and "supersedes" not in bodies[first]
    for body in bodies.values():
        assert_valid_message(body)


def test_skip_policy_records_without_delivering(engine) -> None:
    first, second = _record_both(engine, "skip")
    assert granules(engine)[second]["supersedes"] == first
    assert second not in {granule_id for granule_id, _ in deliveries(engine)}
    assert len(deliveries(engine)) == 2


def test_replace_policy_deletes_and_announces_the_earlier_granule(engine) -> None:
    first, second = _record_both(engine, "replace")
    rows = granules(engine)
    assert rows[first]["deletion_cause"] == f"superseded by {second}" and rows[first]["deleted_at"] is not None
    assert rows[second]["deleted_at"] is None
    events = deliveries(engine)
    assert events.count((first, "deleted")) == 1 and events.count((second, "found")) == 1
    deleted = next(body for body in claimed_bodies(engine) if body["event"] == "deleted")
    assert deleted["id"] == first and deleted["deletion_cause"] == f"superseded by {second}"
    assert_valid_message(deleted)
    assert json.dumps(deleted)


def test_an_unknown_policy_is_refused(engine) -> None:
    with engine.begin() as conn, pytest.raises(ValueError, match="reprocessed_policy"):
        record_granules(conn, [granule_record(0)], ["sqs"], reprocessed_policy="ignore")


def test_lookup_uses_the_identity_index(engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(
            conn.scalars(
                text("EXPLAIN SELECT id FROM granule WHERE identity = :identity"),
                {"identity": MISSION.identity(REPROCESSED)},
            )
        )
    assert "ix_granule_identity" in plan
