"""The gateway against hostile keys (issue 26): stream names and the relay's reserved keys, per-key budgets,
GraphQL limits answered 400 before anything runs, bounded and owned consumer groups, claims — against a real
gateway and real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
import redis
import websockets
from graphql import parse
from websockets.exceptions import InvalidStatus

from link_fetcher import stream_names
from link_fetcher.gateway import graphql_cost
from link_fetcher.gateway.store import owners_key
from tests.gateway_server import ADMIN_KEY, READ_KEY, WRITE_KEY, gateway_settings, running_gateway

OTHER_KEY = "other-read-key"
MAX_PENDING = 5
KEYS = f"{READ_KEY}:read,{OTHER_KEY}:read,{WRITE_KEY}:write,{ADMIN_KEY}:admin"


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    settings = gateway_settings(
        "redis://127.0.0.1:6379/0", None, gateway_api_keys=KEYS, gateway_max_pending=MAX_PENDING
    )
    with running_gateway(settings) as url:
        yield url


@pytest.fixture
def client(gateway_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway_url, timeout=10) as http:
        yield http


@pytest.fixture
def rds(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


@pytest.fixture
def stream(unique_name: str, rds: redis.Redis) -> Iterator[str]:
    yield unique_name
    rds.delete(unique_name, stream_names.receipts_key(unique_name), owners_key(unique_name))


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def graphql(client: httpx.Client, query: str, key: str = READ_KEY, **variables: object) -> httpx.Response:
    return client.post("/graphql", json={"query": query, "variables": variables}, headers=auth(key))


def ws_status(gateway_url: str, path: str, key: str = READ_KEY) -> int:
    """The status a WebSocket handshake is refused with (101: accepted)."""

    async def attempt() -> int:
        url = f"{gateway_url.replace('http', 'ws')}{path}{'&' if '?' in path else '?'}token={key}"
        try:
            async with websockets.connect(url):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    return asyncio.run(attempt())


# --- stream names and reserved keys ------------------------------------------------------------------------


def test_a_write_key_cannot_create_or_read_the_relays_receipts(client, gateway_url, rds, stream) -> None:
    receipts = stream_names.receipts_key(stream)
    refused = client.post(f"/streams/{receipts}/entries", json={"a": "1"}, headers=auth(ADMIN_KEY))
    assert refused.status_code == 403 and "reserved" in refused.json()["error"]
    assert not rds.exists(receipts)
    rds.hset(receipts, "granule-1", "relay-token")  # as the relay keeps it
    for method, path, body in (
        ("GET", f"/streams/{receipts}/entries", None),
        ("POST", f"/streams/{receipts}/groups", {"group": "g", "start": "0"}),
        ("POST", f"/streams/{receipts}/groups/g/read", {"consumer": "c"}),
        ("POST", f"/streams/{receipts}/groups/g/ack", {"ids": ["1-0"]}),
        ("GET", f"/streams/{stream_names.reserved_key('consumers', stream)}/entries", None),
    ):
        answer = client.request(method, path, json=body, headers=auth(ADMIN_KEY))
        assert answer.status_code == 403, (path, answer.text)
    assert rds.hgetall(receipts) == {"granule-1": "relay-token"}
    assert ws_status(gateway_url, f"/streams/{receipts}/ws?after=0") == 403
    answer = graphql(client, "query($s: String!) { entries(stream: $s) { id } }", s=receipts)
    assert answer.status_code == 403 and "reserved" in answer.json()["errors"][0]["message"]


def test_reserved_streams_are_never_listed(client, rds, stream) -> None:
    rds.xadd(stream, {"a": "1"})
    rds.delete(stream_names.receipts_key(stream))
    rds.xadd(stream_names.receipts_key(stream), {"made": "outside the gateway"})
    listed = [s["name"] for s in client.get("/streams", headers=auth(READ_KEY)).json()]
    assert stream in listed and stream_names.receipts_key(stream) not in listed
    names = [s["name"] for s in graphql(client, "{ streams { name } }").json()["data"]["streams"]]
    assert stream in names and stream_names.receipts_key(stream) not in names


@pytest.mark.parametrize("bad", ["lf-test-" + "x" * 300, "lf-test-a*", "lf-test-a%0D%0Ab", "lf-test-%C3%A9"])
def test_bad_stream_names_are_400_on_every_route(client, gateway_url, rds, bad) -> None:
    for method, path, body in (
        ("GET", f"/streams/{bad}/entries", None),
        ("POST", f"/streams/{bad}/entries", {"a": "1"}),
        ("POST", f"/streams/{bad}/groups", {"group": "g", "start": "0"}),
    ):
        answer = client.request(method, path, json=body, headers=auth(ADMIN_KEY))
        assert answer.status_code == 400, (path, answer.text)
    assert ws_status(gateway_url, f"/streams/{bad}/ws?after=0") == 400
    decoded = httpx.URL(f"http://x/{bad}").path[1:]
    answer = graphql(client, "query($s: String!) { entries(stream: $s) { id } }", s=decoded)
    assert answer.status_code == 400
    assert not rds.keys("lf-test-a*")


def test_group_and_consumer_names_follow_the_same_rule(client, rds, stream) -> None:
    assert (
        client.post(
            f"/streams/{stream}/groups", json={"group": "a/b", "start": "0"}, headers=auth(ADMIN_KEY)
        ).status_code
        == 400
    )
    rds.xgroup_create(stream, "g", id="0", mkstream=True)
    answer = client.post(f"/streams/{stream}/groups/g/read", json={"consumer": "c/1"}, headers=auth(READ_KEY))
    assert answer.status_code == 400


# --- fair keys: the entries budget and GraphQL limits --------------------------------------------------------


def test_a_key_over_its_entries_budget_gets_429_and_others_do_not(stream, rds) -> None:
    rds.xadd(stream, {"a": "1"})
    for n in range(600):
        rds.xadd(stream, {"n": str(n)})
    settings = gateway_settings(
        "redis://127.0.0.1:6379/0", None, gateway_api_keys=KEYS, gateway_key_entries_per_second=1
    )
    with running_gateway(settings) as url, httpx.Client(base_url=url, timeout=10) as http:
        params = {"count": 500}
        assert (
            len(http.get(f"/streams/{stream}/entries", params=params, headers=auth(READ_KEY)).json()["entries"]) == 500
        )
        refused = http.get(f"/streams/{stream}/entries", params=params, headers=auth(READ_KEY))
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert "GATEWAY_KEY_ENTRIES_PER_SECOND" in refused.json()["error"]
        other = http.get(f"/streams/{stream}/entries", params=params, headers=auth(OTHER_KEY))
        assert other.status_code == 200
        # What a read did not return is given back: an empty read costs nothing.
        last = rds.xinfo_stream(stream)["last-generated-id"]
        for _ in range(3):
            empty = http.get(
                f"/streams/{stream}/entries", params={"count": 400, "after": last}, headers=auth(WRITE_KEY)
            )
            assert empty.status_code == 200 and empty.json() == {"entries": []}
        query = f'{{ entries(stream: "{stream}", count: 100) {{ id }} }}'
        answer = http.post("/graphql", json={"query": query}, headers=auth(READ_KEY))
        assert answer.status_code == 429 and "retry-after" in answer.headers


def test_graphql_cost_is_charged_before_anything_is_read(client, stream, rds) -> None:
    rds.xadd(stream, {"a": "1"})
    ten = " ".join(f'a{i}: entries(stream: "{stream}", count: 100) {{ id fields }}' for i in range(10))
    answer = client.post("/graphql", json={"query": f"{{ {ten} }}"}, headers=auth(READ_KEY))
    assert answer.status_code == 400 and "query cost 1000" in answer.json()["errors"][0]["message"]
    assert answer.json()["data"] is None
    # A variable's default counts as given.
    query = "query($c: Int = 900) { entries(stream: $s, count: $c) { id } }".replace("$s", f'"{stream}"')
    assert client.post("/graphql", json={"query": query}, headers=auth(READ_KEY)).status_code == 400
    two = " ".join(f'a{i}: entries(stream: "{stream}", count: 50) {{ id }}' for i in range(2))
    answer = client.post("/graphql", json={"query": f"{{ {two} }}"}, headers=auth(READ_KEY))
    assert answer.status_code == 200 and answer.json()["data"]["a0"][0]["id"]


def test_graphql_limit_violations_are_400_and_introspection_counts_for_depth(client) -> None:
    aliases = " ".join(f"a{i}: streams {{ name }}" for i in range(11))
    assert graphql(client, f"{{ {aliases} }}").status_code == 400
    assert graphql(client, "{ streams { " + "name " * 3000 + "} }").status_code == 400
    deep = "{ __schema { types { fields { type { ofType { ofType { ofType { name } } } } } } } }"
    assert graphql_cost.depth(parse(deep)) == 8
    refused = graphql(
        client, "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { name } } } } } } } } }"
    )
    assert refused.status_code == 400 and "depth 9" in refused.json()["errors"][0]["message"]
    assert graphql(client, "{ __schema { types { name } } }").status_code == 200
    assert graphql(client, "{ nope }").status_code == 400


@pytest.mark.unit
def test_graphql_cost_and_depth_read_aliases_fragments_and_variables() -> None:
    document = parse(
        'query Q($n: Int) { a: entries(stream: "s", count: 3) { id } ...F b: entries(stream: "s", count: $n) { id } }'
        ' fragment F on Query { c: entries(stream: "s") { id }'
        ' ... on Query { d: entries(stream: "s", count: 7) { id } } }'
    )
    assert graphql_cost.cost(document, {"n": 5}, "Q", 10) == 3 + 5 + 10 + 7
    assert graphql_cost.cost(document, {}, "Q", 10) == 3 + 10 + 10 + 7  # unset: the field's default
    assert graphql_cost.depth(document, "Q") == 2
    assert graphql_cost.aliases(document) == 4  # those of the fragment too
    looping = parse("{ ...F } fragment F on Query { streams { name } ...F }")
    assert graphql_cost.depth(looping) == 2


# --- bounded and owned consumer groups -----------------------------------------------------------------------


def read_as(client: httpx.Client, stream: str, consumer: str, key: str = READ_KEY, **body: object) -> httpx.Response:
    return client.post(
        f"/streams/{stream}/groups/g/read", json={"consumer": consumer, "count": 100, **body}, headers=auth(key)
    )


def test_a_consumer_holds_at_most_max_pending_entries(client, rds, stream) -> None:
    ids = [rds.xadd(stream, {"n": str(n)}) for n in range(20)]
    rds.xgroup_create(stream, "g", id="0")
    assert [e["id"] for e in read_as(client, stream, "c1").json()["entries"]] == ids[:MAX_PENDING]
    refused = read_as(client, stream, "c1")
    assert refused.status_code == 409 and "GATEWAY_MAX_PENDING" in refused.json()["error"]
    # Its unacked ones are still readable; after acking two it gets two new ones.
    assert len(read_as(client, stream, "c1", pending=True).json()["entries"]) == MAX_PENDING
    acked = client.post(f"/streams/{stream}/groups/g/ack", json={"ids": ids[:2]}, headers=auth(READ_KEY))
    assert acked.json() == {"acked": 2}
    assert [e["id"] for e in read_as(client, stream, "c1").json()["entries"]] == ids[5:7]
    assert rds.xpending(stream, "g")["pending"] == MAX_PENDING


def test_a_websocket_consumer_that_never_acks_gets_only_max_pending_again_and_again(gateway_url, rds, stream) -> None:
    ids = [rds.xadd(stream, {"n": str(n)}) for n in range(50)]
    rds.xgroup_create(stream, "g", id="0")
    url = f"{gateway_url.replace('http', 'ws')}/streams/{stream}/ws?group=g&consumer=lazy&token={READ_KEY}"

    async def session(ack: bool) -> list[str]:
        async with websockets.connect(url) as ws:
            got = [json.loads(await asyncio.wait_for(ws.recv(), 10))["id"] for _ in range(MAX_PENDING)]
            if ack:
                await ws.send(json.dumps({"ack": got}))
                got += [json.loads(await asyncio.wait_for(ws.recv(), 10))["id"] for _ in range(MAX_PENDING)]
            else:
                with pytest.raises(TimeoutError):  # at its limit, nothing more comes
                    await asyncio.wait_for(ws.recv(), 2)
            return got

    assert asyncio.run(session(ack=False)) == ids[:MAX_PENDING]
    assert asyncio.run(session(ack=False)) == ids[:MAX_PENDING]  # the same ones again, not the whole stream
    assert rds.xpending(stream, "g")["pending"] == MAX_PENDING
    assert asyncio.run(session(ack=True)) == ids[: 2 * MAX_PENDING]


def test_consumers_belong_to_the_key_that_first_used_them(client, gateway_url, rds, stream) -> None:
    ids = [rds.xadd(stream, {"n": str(n)}) for n in range(3)]
    rds.xgroup_create(stream, "g", id="0")
    assert len(read_as(client, stream, "mine").json()["entries"]) == 3
    for answer in (
        read_as(client, stream, "mine", OTHER_KEY),
        read_as(client, stream, "mine", OTHER_KEY, pending=True),
        client.post(f"/streams/{stream}/groups/g/ack", json={"ids": ids}, headers=auth(OTHER_KEY)),
        client.post(
            f"/streams/{stream}/groups/g/claim", json={"consumer": "mine", "min_idle": 0}, headers=auth(OTHER_KEY)
        ),
    ):
        assert answer.status_code == 403, answer.text
    assert rds.xpending(stream, "g")["pending"] == 3  # the other key's ack took nothing
    assert ws_status(gateway_url, f"/streams/{stream}/ws?group=g&consumer=mine", OTHER_KEY) == 403
    mutation = 'mutation($s: String!, $ids: [String!]!) { ack(stream: $s, group: "g", ids: $ids) }'
    assert graphql(client, mutation, OTHER_KEY, s=stream, ids=ids).status_code == 403
    assert rds.xpending(stream, "g")["pending"] == 3
    owners = rds.hgetall(owners_key(stream))
    assert list(owners) == ["g/mine"] and READ_KEY not in json.dumps(owners)
    assert client.post(f"/streams/{stream}/groups/g/ack", json={"ids": ids}, headers=auth(READ_KEY)).json() == {
        "acked": 3
    }


def test_claim_hands_an_idle_consumers_entries_to_another_of_the_same_key(client, rds, stream) -> None:
    ids = [rds.xadd(stream, {"n": str(n)}) for n in range(4)]
    rds.xgroup_create(stream, "g", id="0")
    assert len(read_as(client, stream, "crashed", count=3).json()["entries"]) == 3
    assert len(read_as(client, stream, "theirs", OTHER_KEY, count=1).json()["entries"]) == 1

    def claim(consumer: str, key: str = READ_KEY, **body: object) -> httpx.Response:
        return client.post(f"/streams/{stream}/groups/g/claim", json={"consumer": consumer, **body}, headers=auth(key))

    assert claim("heir", min_idle=3_600_000).json() == {"entries": [], "next": "0-0"}  # none idle that long
    first = claim("heir", min_idle=0, count=2).json()
    assert [e["id"] for e in first["entries"]] == ids[:2] and first["entries"][0]["fields"] == {"n": "0"}
    rest = claim("heir", min_idle=0, count=2, start=first["next"]).json()
    assert [e["id"] for e in rest["entries"]] == ids[2:3]  # ids[3] is the other key's consumer's
    consumers = {c["name"]: c["pending"] for c in rds.xinfo_consumers(stream, "g")}
    assert consumers == {"crashed": 0, "heir": 3, "theirs": 1}
    assert claim("heir", min_idle=-1).status_code == 400
