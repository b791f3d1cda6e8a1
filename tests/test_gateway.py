"""Stream gateway over HTTP: auth matrix, REST routes and limits, GraphQL (query, mutation, subscription),
/healthz and the console summary — against a real gateway (uvicorn), real Redis and real Postgres."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
import websockets
from sqlalchemy import Engine, text

from db import record_granules
from link_fetcher.cli import main
from link_fetcher.gateway.auth import Role, parse_api_keys
from link_fetcher.gateway.console import chart_series
from link_fetcher.gateway.server import redact_tokens
from tests.factories import granule_record
from tests.gateway_server import ADMIN_KEY, READ_KEY, WRITE_KEY, gateway_settings, running_gateway


@pytest.fixture(scope="module")
def gateway_url(database_url: str) -> Iterator[str]:
    with running_gateway(gateway_settings("redis://127.0.0.1:6379/0", database_url)) as url:
        yield url


@pytest.fixture
def client(gateway_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway_url, timeout=10) as http:
        yield http


@pytest.fixture
def stream(unique_name: str, redis_url: str) -> Iterator[str]:
    yield unique_name
    redis.Redis.from_url(redis_url).delete(unique_name)


@pytest.fixture
def rds(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- auth ---------------------------------------------------------------------------------------------------


ROUTES = [
    ("GET", "/streams", None, Role.READ),
    ("GET", "/streams/{stream}/entries", None, Role.READ),
    ("POST", "/streams/{stream}/entries", {"a": "1"}, Role.WRITE),
    ("POST", "/streams/{stream}/groups", {"group": "g-new", "start": "0"}, Role.ADMIN),
    ("POST", "/streams/{stream}/groups/g/read", {"consumer": "c-{key}"}, Role.READ),  # a consumer is its key's
    ("POST", "/streams/{stream}/groups/g/ack", {"ids": ["1-0"]}, Role.READ),
    ("POST", "/streams/{stream}/groups/g/claim", {"consumer": "c-{key}", "min_idle": 0}, Role.READ),
    ("GET", "/console/summary", None, Role.READ),
]
KEYS = {None: None, "wrong-key": None, READ_KEY: Role.READ, WRITE_KEY: Role.WRITE, ADMIN_KEY: Role.ADMIN}


@pytest.mark.parametrize(("method", "path", "body", "needed"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_each_route_needs_a_key_with_a_high_enough_role(client, rds, stream, method, path, body, needed) -> None:
    rds.xadd(stream, {"seed": "1"})
    rds.xgroup_create(stream, "g", id="0")
    for key, role in KEYS.items():
        sent = {**body, "consumer": body["consumer"].format(key=role)} if body and "consumer" in body else body
        response = client.request(method, path.format(stream=stream), json=sent, headers=auth(key) if key else {})
        if role is None:
            assert response.status_code == 401, (key, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
        elif role < needed:
            assert response.status_code == 403, (key, response.text)
            assert f"{needed.name.lower()} is needed" in response.json()["error"]
        else:
            assert response.status_code in (200, 201), (key, response.text)
        if key:
            assert key not in response.text
    # Nothing was appended by a key without the write role; the admin appended once, the write key once.
    assert rds.xlen(stream) == 1 + (2 if method == "POST" and path.endswith("entries") else 0)


def test_read_key_cannot_append_and_no_key_is_401(client, rds, stream) -> None:
    assert client.post(f"/streams/{stream}/entries", json={"a": "1"}, headers=auth(READ_KEY)).status_code == 403
    assert client.post(f"/streams/{stream}/entries", json={"a": "1"}).status_code == 401
    assert client.get("/streams").status_code == 401
    assert rds.exists(stream) == 0


@pytest.mark.unit
def test_parse_api_keys_rejects_bad_items_without_echoing_keys() -> None:
    keys = parse_api_keys(" k1:read , k2:WRITE,k:3:admin ")
    assert sorted((p.name, p.role) for p in keys.values()) == [
        ("key #1", Role.READ),
        ("key #2", Role.WRITE),
        ("key #3", Role.ADMIN),
    ]
    for text_value, message in [
        ("secret-one", "item 1 is not `key:role`"),
        ("a:read,secret-two:owner", "item 2 has role 'owner'"),
        ("a:read,a:write", "item 2 repeats an earlier key"),
        (" , ", "is empty"),
    ]:
        with pytest.raises(ValueError, match=message) as caught:
            parse_api_keys(text_value)
        assert "secret" not in str(caught.value)


@pytest.mark.unit
def test_tokens_in_query_strings_are_redacted_from_logs() -> None:
    assert (
        redact_tokens("/streams/s/ws?group=g&token=abc123&consumer=c") == "/streams/s/ws?group=g&token=***&consumer=c"
    )
    assert redact_tokens("/graphql?token=abc") == "/graphql?token=***"
    assert redact_tokens("/streams?mytoken=keep") == "/streams?mytoken=keep"


@pytest.mark.unit
def test_gateway_command_refuses_missing_or_bad_configuration(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.delenv("GATEWAY_API_KEYS", raising=False)
    assert main(["gateway"]) == 2
    assert "GATEWAY_API_KEYS is not set" in capsys.readouterr().err
    monkeypatch.setenv("GATEWAY_API_KEYS", "topsecret:superuser")
    assert main(["gateway"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "role 'superuser'" in err and "topsecret" not in err
    monkeypatch.delenv("REDIS_URL")
    assert main(["gateway"]) == 2
    assert "REDIS_URL is not set" in capsys.readouterr().err


# --- REST ---------------------------------------------------------------------------------------------------


def test_streams_lists_visible_streams_with_groups_pending_and_lag(client, rds, stream, unique_name) -> None:
    ids = [rds.xadd(stream, {"n": str(n)}) for n in range(5)]
    rds.xgroup_create(stream, "workers", id="0")
    rds.xreadgroup("workers", "c1", {stream: ">"}, count=2)
    hidden = f"hidden-{unique_name}"
    rds.xadd(hidden, {"n": "1"})
    try:
        listed = {s["name"]: s for s in client.get("/streams", headers=auth(READ_KEY)).json()}
        assert listed[stream] == {
            "name": stream,
            "length": 5,
            "first_entry_id": ids[0],
            "last_entry_id": ids[-1],
            "groups": [{"name": "workers", "consumers": 1, "pending": 2, "lag": 3}],
        }
        assert hidden not in listed
        response = client.get(f"/streams/{hidden}/entries", headers=auth(READ_KEY))
        assert response.status_code == 404 and "no stream" in response.json()["error"]
    finally:
        rds.delete(hidden)


def test_entries_after_an_id_with_count(client, rds, stream) -> None:
    ids = [rds.xadd(stream, {"n": str(n), "data": json.dumps({"n": n})}) for n in range(10)]
    body = client.get(f"/streams/{stream}/entries", params={"after": ids[2], "count": 4}, headers=auth(READ_KEY)).json()
    assert body == {
        "entries": [
            {"id": i, "fields": {"n": str(n), "data": json.dumps({"n": n})}} for n, i in list(enumerate(ids))[3:7]
        ]
    }
    assert client.get(f"/streams/{stream}/entries", params={"after": "$"}, headers=auth(READ_KEY)).json() == {
        "entries": []
    }


def test_a_blocking_read_returns_an_entry_appended_while_it_waits(client, rds, stream) -> None:
    rds.xadd(stream, {"n": "old"})
    appender = threading.Timer(0.3, lambda: rds.xadd(stream, {"n": "new"}))
    appender.start()
    started = time.monotonic()
    body = client.get(f"/streams/{stream}/entries", params={"after": "$", "block": 2000}, headers=auth(READ_KEY))
    waited = time.monotonic() - started
    appender.join()
    assert [entry["fields"] for entry in body.json()["entries"]] == [{"n": "new"}]
    assert 0.25 < waited < 1.9
    started = time.monotonic()
    body = client.get(f"/streams/{stream}/entries", params={"after": "$", "block": 300}, headers=auth(READ_KEY))
    assert body.json() == {"entries": []} and time.monotonic() - started >= 0.28


def test_append_stores_the_fields_and_rejects_bad_entries(client, rds, stream) -> None:
    response = client.post(
        f"/streams/{stream}/entries", json={"subject": "a.SAFE", "href": "x"}, headers=auth(WRITE_KEY)
    )
    assert response.status_code == 201
    assert rds.xrange(stream) == [(response.json()["id"], {"subject": "a.SAFE", "href": "x"})]
    for body, status, message in [
        ({"n": 1}, 400, "field values must be strings: n"),
        ({}, 400, "non-empty JSON object"),
        (["a"], 400, "non-empty JSON object"),
        ({"big": "x" * 1100}, 413, "above the limit of 1024 (GATEWAY_MAX_ENTRY_BYTES)"),
    ]:
        response = client.post(f"/streams/{stream}/entries", json=body, headers=auth(WRITE_KEY))
        assert (response.status_code, message in response.json()["error"]) == (status, True), response.text
    response = client.post(f"/streams/{stream}/entries", content=b"{not json", headers=auth(WRITE_KEY))
    assert response.status_code == 400 and response.json() == {"error": "the body is not JSON"}
    response = client.post(f"/streams/{stream}/entries", content=b"x" * 10_000, headers=auth(WRITE_KEY))
    assert response.status_code == 413
    assert rds.xlen(stream) == 1


def test_limits_and_bad_ids_give_clear_400s(client, stream) -> None:
    for params, message in [
        ({"count": 501}, "count 501 is above the limit of 500 (GATEWAY_MAX_COUNT)"),
        ({"count": 0}, "count must be at least 1"),
        ({"block": 2001}, "block 2001 ms is above the limit of 2000 ms (GATEWAY_MAX_BLOCK_MS)"),
        ({"after": "yesterday"}, "after 'yesterday' is not an entry id"),
        ({"count": "many"}, "count"),
    ]:
        response = client.get(f"/streams/{stream}/entries", params=params, headers=auth(READ_KEY))
        assert response.status_code == 400, response.text
        assert message in response.json()["error"]


def test_group_create_read_pending_and_ack(client, rds, stream) -> None:
    ids = [rds.xadd(stream, {"n": str(n)}) for n in range(6)]
    create = client.post(f"/streams/{stream}/groups", json={"group": "g", "start": "0"}, headers=auth(ADMIN_KEY))
    assert create.status_code == 201
    again = client.post(f"/streams/{stream}/groups", json={"group": "g", "start": "0"}, headers=auth(ADMIN_KEY))
    assert again.status_code == 409 and "already exists" in again.json()["error"]

    def read(**body: object) -> list[str]:
        response = client.post(
            f"/streams/{stream}/groups/g/read", json={"consumer": "c1", **body}, headers=auth(READ_KEY)
        )
        assert response.status_code == 200, response.text
        return [entry["id"] for entry in response.json()["entries"]]

    assert read(count=4) == ids[:4]
    assert read(count=4) == ids[4:]
    assert read(count=4) == []
    ack = client.post(f"/streams/{stream}/groups/g/ack", json={"ids": [*ids[:3], "1-0"]}, headers=auth(READ_KEY))
    assert ack.json() == {"acked": 3}
    assert read(pending=True, count=10) == ids[3:]
    assert rds.xpending(stream, "g")["pending"] == 3
    missing = client.post(f"/streams/{stream}/groups/nope/read", json={"consumer": "c1"}, headers=auth(READ_KEY))
    assert missing.status_code == 404 and "no group 'nope'" in missing.json()["error"]
    bad_ack = client.post(f"/streams/{stream}/groups/g/ack", json={"ids": ["x"]}, headers=auth(READ_KEY))
    assert bad_ack.status_code == 400


def test_rest_group_read_and_ack_agree_with_graphql_streams_on_pending(client, rds, stream) -> None:
    pipe = rds.pipeline()
    for n in range(1000):
        pipe.xadd(stream, {"n": str(n)})
    pipe.execute()
    client.post(f"/streams/{stream}/groups", json={"group": "g", "start": "0"}, headers=auth(ADMIN_KEY))
    read = client.post(f"/streams/{stream}/groups/g/read", json={"consumer": "c", "count": 300}, headers=auth(READ_KEY))
    ids = [entry["id"] for entry in read.json()["entries"]]
    assert client.post(f"/streams/{stream}/groups/g/ack", json={"ids": ids[:120]}, headers=auth(READ_KEY)).json() == {
        "acked": 120
    }
    rest_groups = next(s for s in client.get("/streams", headers=auth(READ_KEY)).json() if s["name"] == stream)[
        "groups"
    ]
    query = "{ streams { name length groups { name pending lag } } }"
    graphql = client.post("/graphql", json={"query": query}, headers=auth(READ_KEY)).json()
    graphql_stream = next(s for s in graphql["data"]["streams"] if s["name"] == stream)
    assert rest_groups[0]["pending"] == graphql_stream["groups"][0]["pending"] == rds.xpending(stream, "g")["pending"]
    assert rest_groups[0]["pending"] == 180
    assert graphql_stream["groups"][0]["lag"] == 700 and graphql_stream["length"] == 1000


# --- GraphQL ------------------------------------------------------------------------------------------------


def test_graphql_entries_and_ack(client, rds, stream) -> None:
    ids = [rds.xadd(stream, {"n": str(n)}) for n in range(3)]
    rds.xgroup_create(stream, "g", id="0")
    rds.xreadgroup("g", "c", {stream: ">"})
    query = "query($s: String!, $after: String!) { entries(stream: $s, after: $after, count: 5) { id fields } }"
    body = client.post(
        "/graphql", json={"query": query, "variables": {"s": stream, "after": ids[0]}}, headers=auth(READ_KEY)
    )
    assert body.json()["data"]["entries"] == [{"id": i, "fields": {"n": str(n)}} for n, i in list(enumerate(ids))[1:]]
    mutation = 'mutation($s: String!, $ids: [String!]!) { ack(stream: $s, group: "g", ids: $ids) }'
    body = client.post(
        "/graphql", json={"query": mutation, "variables": {"s": stream, "ids": ids[:2]}}, headers=auth(READ_KEY)
    )
    assert body.json() == {"data": {"ack": 2}}
    assert rds.xpending(stream, "g")["pending"] == 1
    assert client.post("/graphql", json={"query": "{ streams { name } }"}).status_code == 401
    limit = client.post(
        "/graphql",
        json={"query": f'{{ entries(stream: "{stream}", count: 9999) {{ id }} }}'},
        headers=auth(READ_KEY),
    )
    assert limit.status_code == 400 and "query cost 9999" in limit.json()["errors"][0]["message"]


async def _subscribe(url: str, query: str, token: str | None, received: int, after_ack=None) -> list[dict]:
    async with websockets.connect(url.replace("http", "ws") + "/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token} if token else {}}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert ack["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        if after_ack is not None:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(after_ack)
        frames = []
        while len(frames) < received:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert frame["type"] == "next", frame
            frames.append(frame["payload"]["data"]["entries"])
        return frames


def test_graphql_subscription_tails_new_entries_and_resends_a_consumers_pending(gateway_url, rds, stream) -> None:
    rds.xadd(stream, {"n": "before"})
    query = f'subscription {{ entries(stream: "{stream}") {{ id fields }} }}'
    frames = asyncio.run(
        _subscribe(gateway_url, query, READ_KEY, 2, after_ack=lambda: [rds.xadd(stream, {"n": n}) for n in ("a", "b")])
    )
    assert [frame["fields"] for frame in frames] == [{"n": "a"}, {"n": "b"}]

    rds.xgroup_create(stream, "g", id="0")
    first = rds.xreadgroup("g", "c", {stream: ">"}, count=2)[0][1]  # delivered to c, never acked
    group_query = f'subscription {{ entries(stream: "{stream}", group: "g", consumer: "c") {{ id }} }}'
    frames = asyncio.run(_subscribe(gateway_url, group_query, READ_KEY, 3))
    all_ids = [entry_id for entry_id, _ in rds.xrange(stream)]
    assert [frame["id"] for frame in frames] == [entry_id for entry_id, _ in first] + all_ids[2:3]


def test_graphql_subscription_without_a_key_is_rejected(gateway_url, stream) -> None:
    async def attempt() -> int:
        url = gateway_url.replace("http", "ws") + "/graphql"
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"token": "wrong"}}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            return closed.value.rcvd.code

    assert asyncio.run(attempt()) == 4403


# --- health and console -------------------------------------------------------------------------------------


def test_healthz_reports_redis_and_database(client, database_url) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}  # details only for a key holder
    assert client.get("/healthz", headers=auth(READ_KEY)).json() == {"status": "ok", "redis": "ok", "database": "ok"}
    assert client.get("/healthz", headers=auth("wrong-key")).status_code == 401
    with running_gateway(gateway_settings("redis://127.0.0.1:6379/0", None)) as url:
        health = httpx.get(f"{url}/healthz", headers=auth(READ_KEY)).json()
        assert health == {"status": "ok", "redis": "ok", "database": "absent"}
        summary = httpx.get(f"{url}/console/summary", headers=auth(READ_KEY)).json()
        assert summary["database"] == "absent" and "recorded" not in summary


def test_redis_down_is_a_503_not_a_crash(database_url) -> None:
    settings = gateway_settings("redis://127.0.0.1:1/0", "postgresql://postgres@127.0.0.1:1/none")
    with running_gateway(settings) as url:
        assert httpx.get(f"{url}/healthz", timeout=20).json() == {"status": "unavailable"}
        health = httpx.get(f"{url}/healthz", headers=auth(READ_KEY), timeout=20)
        assert health.status_code == 503
        assert health.json()["redis"].startswith("error: ") and health.json()["database"].startswith("error: ")
        streams = httpx.get(f"{url}/streams", headers=auth(READ_KEY), timeout=20)
        assert streams.status_code == 503 and streams.json() == {"error": "redis unavailable"}
        graphql = httpx.post(f"{url}/graphql", json={"query": "{ streams { name } }"}, headers=auth(READ_KEY))
        assert graphql.status_code == 503 and graphql.json()["errors"][0]["message"] == "redis unavailable"
        for answer in (health, streams, graphql):  # internal addresses go to the log only
            assert "127.0.0.1" not in answer.text and "port" not in answer.text, answer.text


def test_console_summary_counts_deliveries_and_granules_per_day(client, engine: Engine) -> None:
    records = [granule_record(n, platform="S2A" if n < 3 else "S2B") for n in range(5)]
    with engine.begin() as conn:
        record_granules(conn, records, ["redis"])
        conn.execute(
            text(
                "UPDATE outbox SET status = 'failed', attempts = 10, last_error = 'queue gone' WHERE granule_id = :id"
            ),
            {"id": records[0].id},
        )
        conn.execute(
            text("UPDATE granule SET first_seen = now() - interval '2 days' WHERE id = :id"), {"id": records[4].id}
        )
    summary = client.get("/console/summary", headers=auth(READ_KEY)).json()
    assert summary["database"] == "ok"
    (redis_sink,) = summary["deliveries"]["by_sink"].values()
    assert redis_sink.pop("oldest_pending_seconds") < 60
    assert summary["deliveries"]["by_sink"] == {"redis": {"pending": 4, "sent": 0, "failed": 1}}
    assert [(d["id"], d["last_error"]) for d in summary["deliveries"]["oldest_failed"]] == [
        (records[0].id, "queue gone")
    ]
    assert len(summary["deliveries"]["oldest_pending"]) == 4
    recorded = summary["recorded"]
    assert len(recorded["days"]) == 30 and recorded["days"][-1] == dt.datetime.now(dt.UTC).date().isoformat()
    assert recorded["platforms"]["S2A"][-1] == 3 and sum(recorded["platforms"]["S2A"]) == 3
    assert recorded["platforms"]["S2B"][-1] == 1 and recorded["platforms"]["S2B"][-3] == 1
    # Nothing delivered: the four granules of the last 24 h are undelivered, no freshness per day yet.
    assert summary["freshness"]["last_24h"]["search"]["undelivered"] == 4
    assert summary["freshness"]["per_day"] == []


@pytest.mark.unit
def test_chart_series_fills_missing_days_and_drops_old_ones() -> None:
    today = dt.date(2024, 9, 30)
    rows = [(dt.date(2024, 9, 30), "S2A", 4), (dt.date(2024, 9, 28), "S2B", 2), (dt.date(2024, 8, 1), "S2A", 9)]
    series = chart_series(rows, today, days=3)
    assert series == {
        "days": ["2024-09-28", "2024-09-29", "2024-09-30"],
        "platforms": {"S2A": [0, 0, 4], "S2B": [2, 0, 0]},
    }


# --- abuse: one key must not starve the others ----------------------------------------------------------------


def test_long_polls_count_against_the_keys_connection_limit(gateway_url, rds, stream) -> None:
    """GATEWAY_MAX_CONNECTIONS_PER_KEY is 3 here: a fourth blocking read of the same key is a 429 while the
    others wait; another key is not affected, and a read that does not block is not counted."""
    rds.xadd(stream, {"seed": "1"})

    async def attempt() -> tuple[list[int], int, int]:
        async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as http:
            polls = [
                asyncio.create_task(
                    http.get(f"/streams/{stream}/entries", params={"after": "$", "block": 1500}, headers=auth(READ_KEY))
                )
                for _ in range(3)
            ]
            await asyncio.sleep(0.5)  # the three are waiting in Redis
            fourth = await http.get(
                f"/streams/{stream}/entries", params={"after": "$", "block": 1500}, headers=auth(READ_KEY)
            )
            quick = await http.get(f"/streams/{stream}/entries", headers=auth(READ_KEY))
            other = await http.get(
                f"/streams/{stream}/entries", params={"after": "$", "block": 100}, headers=auth(WRITE_KEY)
            )
            statuses = [(await poll).status_code for poll in polls]
            return statuses, fourth.status_code, quick.status_code * 1000 + other.status_code

    statuses, fourth, others = asyncio.run(attempt())
    assert statuses == [200, 200, 200] and fourth == 429 and others == 200_200


def test_graphql_aliases_depth_and_total_entries_are_bounded(client, rds, stream) -> None:
    rds.xadd(stream, {"seed": "1"})
    aliases = " ".join(f'a{i}: entries(stream: "{stream}", count: 1) {{ id }}' for i in range(11))
    many = client.post("/graphql", json={"query": f"{{ {aliases} }}"}, headers=auth(READ_KEY)).json()
    assert "aliases" in many["errors"][0]["message"] and not many.get("data")
    huge = "{ streams { " + "name " * 3000 + "} }"  # one query of thousands of tokens is refused before it runs
    assert (
        "tokens" in client.post("/graphql", json={"query": huge}, headers=auth(READ_KEY)).json()["errors"][0]["message"]
    )
    # Within the alias limit, the entries asked in all are still bounded, before anything is read.
    three = " ".join(f'a{i}: entries(stream: "{stream}", count: 100) {{ id }}' for i in range(3))
    answer = client.post("/graphql", json={"query": f"{{ {three} }}"}, headers=auth(READ_KEY))
    assert answer.status_code == 400
    assert "query cost 300" in answer.json()["errors"][0]["message"] and not answer.json().get("data")


def test_keys_that_are_not_streams_and_ids_beyond_64_bits_are_4xx(client, rds, unique_name) -> None:
    rds.set(unique_name, "a plain string")
    try:
        for method, path, body in (
            ("GET", f"/streams/{unique_name}/entries", None),
            ("POST", f"/streams/{unique_name}/entries", {"a": "1"}),
            ("POST", f"/streams/{unique_name}/groups", {"group": "g", "start": "0"}),
        ):
            response = client.request(method, path, json=body, headers=auth(ADMIN_KEY))
            assert response.status_code == 404, (path, response.text)
    finally:
        rds.delete(unique_name)
    too_big = f"{2**64}-0"
    response = client.get(f"/streams/{unique_name}/entries", params={"after": too_big}, headers=auth(READ_KEY))
    assert response.status_code == 400 and "is not an entry id" in response.json()["error"]
    fits = f"{2**64 - 1}-{2**64 - 1}"
    assert (
        client.get(f"/streams/{unique_name}/entries", params={"after": fits}, headers=auth(READ_KEY)).status_code == 200
    )


def test_docs_and_openapi_need_a_key(client) -> None:
    for path in ("/docs", "/openapi.json"):
        assert client.get(path).status_code == 401
    assert client.get("/openapi.json", headers=auth(READ_KEY)).json()["info"]["title"] == "link-fetcher stream gateway"
    page = client.get("/docs", params={"token": READ_KEY})
    assert page.status_code == 200 and "/openapi.json?token=" in page.text


def test_appends_trim_the_stream(database_url, rds, unique_name) -> None:
    with running_gateway(gateway_settings("redis://127.0.0.1:6379/0", None, redis_stream_maxlen=100)) as url:
        try:
            for n in range(1000):
                httpx.post(f"{url}/streams/{unique_name}/entries", json={"n": str(n)}, headers=auth(WRITE_KEY))
            assert rds.xlen(unique_name) < 300  # trimmed to about 100 (approximate trimming works per node)
        finally:
            rds.delete(unique_name)
