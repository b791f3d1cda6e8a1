"""The twin's simulated CDSE (twin/world.py, twin/faults.py): deterministic, at the volume it claims, with late
products, reprocessings, deletions and notifications at their rates, served with CDSE's rules."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from urllib.parse import urlencode

import pytest

from link_fetcher.fetching.query import DayQuery
from tests.fakes.cdse_catalogue import DELETED_PATH, PRODUCTS_PATH, FakeCatalogue
from tests.fakes.cdse_identity import TOKEN_PATH
from twin.faults import FAULT_RATES, CatalogueFaults
from twin.world import CYCLE_DAYS, World, WorldCdse, WorldConfig, WorldSource, relative_orbits_over, tile_centre

pytestmark = pytest.mark.unit

START = dt.date(2026, 11, 1)
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def small_world() -> World:
    """Every 20th tile of the HLS list (~950), high rates so that each behaviour shows in a few days."""
    tiles = sorted(World(WorldConfig(scope_tiles=1)).tiles)[::20]
    config = WorldConfig(
        start=START,
        days=6,
        scope_tiles=100,
        late_share=0.1,
        very_late_share=0.05,
        reprocessing_share=0.05,
        deletion_share=0.05,
        push_lost_share=0.1,
        push_duplicated_share=0.1,
    )
    return World(config, tiles=tiles)


def test_the_same_seed_gives_the_same_world_and_another_seed_another(small_world: World) -> None:
    again = World(small_world.config, tiles=small_world.tiles)
    other = World(dataclasses.replace(small_world.config, seed=7), tiles=small_world.tiles)
    names = [p.name for p in small_world.published_on(2)]
    assert names == [p.name for p in again.published_on(2)]
    assert [p.id for p in small_world.published_on(2)] == [p.id for p in again.published_on(2)]
    assert names != [p.name for p in other.published_on(2)]
    assert small_world.scope == again.scope


def test_a_product_is_found_again_from_its_id_alone(small_world: World) -> None:
    for product in small_world.published_on(3)[:50]:
        found = small_world.product(product.id.upper())
        assert found is not None and (found.name, found.published) == (product.name, product.published)
    assert small_world.product("f867a59a-9336-46d0-93ae-e55bf29403f8") is None
    assert small_world.product("not-a-uuid") is None


def test_the_daily_volume_follows_the_orbits_over_each_tile(small_world: World) -> None:
    """Per platform and level, a day holds about the tiles' relative orbits / 10 products, and reprocessings (the
    derivation the docs give for the full list: ~4,000 a platform a day)."""
    expected = sum(relative_orbits_over(tile_centre(tile)[0]) for tile in small_world.tiles) / CYCLE_DAYS
    expected *= 1 + small_world.config.reprocessing_share
    days = range(1, small_world.config.days)
    volumes = [small_world.daily_volume(day) for day in days]
    assert set(volumes[0]) == {f"{kind} {p}" for kind in ("S2MSI1C", "S2MSI2A") for p in ("S2A", "S2B", "S2C")}
    for kind in volumes[0]:
        mean = sum(volume[kind] for volume in volumes) / len(days)
        assert 0.9 * expected < mean < 1.1 * expected


def test_products_are_named_and_shaped_as_cdse_gives_them(small_world: World) -> None:
    product = small_world.published_on(2)[0]
    body = json.loads(product.full_json)
    assert body["Id"] == product.id and body["Name"] == product.name
    assert body["PublicationDate"].endswith("Z") and body["ContentLength"] == product.size
    attributes = {a["Name"]: a["Value"] for a in body["Attributes"]}
    assert attributes["tileId"] == product.tile and attributes["productType"] == "S2MSI1C"
    assert attributes["platformSerialIdentifier"] == product.platform[-1]
    parts = product.name.removesuffix(".SAFE").split("_")
    assert parts[:2] == [product.platform, "MSIL1C"] and parts[5] == f"T{product.tile}"
    assert {c["Algorithm"]: c["Value"] for c in body["Checksum"]}["MD5"] == product.digests[0]
    assert product.sensing < product.published <= product.visible_at


def test_late_products_reprocessings_and_deletions_come_at_their_rates(small_world: World) -> None:
    products = [p for day in range(small_world.config.days) for p in small_world.published_on(day)]
    late = [p for p in products if p.visible_at > p.published]
    very_late = [p for p in late if p.visible_at - p.published >= dt.timedelta(days=1)]
    reprocessings = [p for p in products if p.supersedes]
    deleted = [p for p in products if p.deleted_at]
    assert 0.1 < len(late) / len(products) < 0.2  # 15 % asked
    assert 0.03 < len(very_late) / len(products) < 0.07
    assert 0.02 < len(reprocessings) / len(products) < 0.08
    assert 0.03 < len(deleted) / len(products) < 0.07
    for product in reprocessings:
        original = small_world.product(product.supersedes or "")
        assert original is not None and original.published < product.published
        assert _identity(original.name) == _identity(product.name) and original.name != product.name
    for product in deleted:
        assert product.deleted_at is not None and product.deleted_at > product.visible_at


def _identity(name: str) -> str:
    parts = name.split("_")
    return "_".join(parts[:3] + parts[4:6])


def test_search_sees_a_product_from_its_visibility_to_its_deletion(small_world: World) -> None:
    late = next(p for p in small_world.published_on(2) if p.visible_at > p.published and p.deleted_at)
    assert late.deleted_at is not None
    hint_day = late.published.date()
    now = late.published
    source = WorldSource(small_world, lambda: now)
    catalogue = FakeCatalogue(source)

    def ids(path: str, day: dt.date) -> set[str]:
        query = DayQuery(day, late.platform, "S2MSI1C", 30)
        params = {"$filter": query.filter(), "$top": "1000", "$orderby": "PublicationDate asc", "$expand": "Attributes"}
        if path == DELETED_PATH:
            start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
            bounds = f"DeletionDate ge {start:%Y-%m-%dT%H:%M:%S}.000Z and DeletionDate lt "
            params = {"$filter": bounds + f"{start + dt.timedelta(days=1):%Y-%m-%dT%H:%M:%S}.000Z", "$top": "1000"}
        page = json.loads(catalogue.search(params, "cdse.test", path))
        return {p["Id"] for p in page["value"]}

    assert late.id not in ids(PRODUCTS_PATH, hint_day)
    now = late.visible_at
    assert late.id in ids(PRODUCTS_PATH, hint_day)
    assert source.product(late.id) is not None
    now = late.deleted_at
    assert late.id not in ids(PRODUCTS_PATH, hint_day)
    assert late.id in ids(DELETED_PATH, late.deleted_at.date())
    assert source.product(late.id) is None


def test_a_day_pages_with_cdse_rules_and_counts(small_world: World) -> None:
    catalogue = FakeCatalogue(WorldSource(small_world, lambda: T0 + dt.timedelta(days=10)))
    day = START + dt.timedelta(days=3)
    expected = {
        p.id for p in small_world.published_on(3) if p.platform == "S2B" and p.visible(T0 + dt.timedelta(days=10))
    }
    query = DayQuery(day, "S2B", "S2MSI1C", 30)
    params = {"$filter": query.filter(), "$top": "50", "$orderby": "PublicationDate asc", "$count": "True"}
    seen: list[str] = []
    while True:
        page = json.loads(catalogue.search(params, "cdse.test"))
        assert page["@odata.count"] == len(expected)
        seen += [p["Id"] for p in page["value"]]
        if "@odata.nextLink" not in page:
            break
        params = {**params, "$skip": str(len(seen))}
    assert len(seen) == len(set(seen)) and set(seen) == expected


def test_notifications_lose_duplicate_delay_and_reorder(small_world: World) -> None:
    sent = [n for day in range(small_world.config.days + 2) for n in small_world.notifications_on(day)]
    created = [n for n in sent if n.event == "created"]
    products = [p for day in range(small_world.config.days) for p in small_world.published_on(day)]
    notified = {n.product.id for n in created}
    lost = [p for p in products if p.id not in notified]
    assert 0.06 < len(lost) / len(products) < 0.14  # 10 % asked
    assert all(small_world.lost(p) for p in lost)
    assert sum(n.copy for n in created) > 0.05 * len(products)
    assert sent == sorted(sent, key=lambda n: n.at)
    published_order = [n.product.published for n in created]
    assert published_order != sorted(published_order)  # delays reorder them
    deleted = [n for n in sent if n.event == "deleted"]
    assert deleted and all(n.product.deleted_at and n.at > n.product.deleted_at for n in deleted)
    body = created[0].body("sub-1")
    assert body["SubscriptionEvent"] == "created" and body["value"]["Id"] == created[0].product.id
    assert deleted[0].body("sub-1")["value"]["DeletionDate"].endswith("Z")


def test_the_scope_spreads_over_the_tile_list(small_world: World) -> None:
    assert len(small_world.scope) == 100
    latitudes = sorted(tile_centre(tile)[0] for tile in small_world.scope)
    assert latitudes[0] < -20 and latitudes[-1] > 50
    in_scope = list(small_world.month())
    assert in_scope and all(p.tile in small_world.scope and p.product_type == "S2MSI1C" for p in in_scope)


def test_catalogue_faults_are_deterministic_and_the_outage_covers_its_day_for_two_days() -> None:
    faults = CatalogueFaults(
        rates=FAULT_RATES | {"429": 0.2, "500": 0.1},
        outage_day=START + dt.timedelta(days=2),
        outage_from=T0 + dt.timedelta(days=3),
    )
    now = T0 + dt.timedelta(days=1)
    one, two = faults.policy(lambda: now), faults.policy(lambda: now)
    queries = [
        urlencode({"$filter": DayQuery(START, "S2A", "S2MSI1C", 30).filter(), "$skip": str(i)}) for i in range(200)
    ]
    answers = [one(PRODUCTS_PATH, q) for q in queries]
    assert answers == [two(PRODUCTS_PATH, q) for q in queries]
    assert 0.2 < sum(a is not None for a in answers) / len(answers) < 0.4
    outage_query = urlencode({"$filter": DayQuery(START + dt.timedelta(days=2), "S2A", "S2MSI1C", 30).filter()})
    other_query = urlencode({"$filter": DayQuery(START + dt.timedelta(days=1), "S2A", "S2MSI1C", 30).filter()})
    for offset, down in ((2.9, False), (3.0, True), (4.9, True), (5.0, False)):
        moment = T0 + dt.timedelta(days=offset)
        policy = faults.policy(lambda moment=moment: moment)
        assert (policy(PRODUCTS_PATH, outage_query) == "500") is down
        assert policy.played["outage"] == down
        policy(PRODUCTS_PATH, other_query)
        assert policy.played["outage"] == down


def test_world_cdse_serves_tokens_searches_and_checked_downloads(small_world: World) -> None:
    now = T0 + dt.timedelta(days=5)
    cdse = WorldCdse(small_world, lambda: now, username="u", password="p")
    status, _, body = cdse.handle(
        "POST", TOKEN_PATH, "", {}, b"grant_type=password&username=u&password=p&client_id=cdse-public"
    )
    assert status == 200
    token = json.loads(body)["access_token"]
    product = next(p for p in small_world.published_on(2) if p.visible(now))
    path = f"/odata/v1/Products({product.id})/$value"
    assert cdse.handle("GET", path, "", {}, b"")[0] == 401
    status, _, content = cdse.handle("GET", path, "", {"authorization": f"Bearer {token}"}, b"")
    assert status == 200 and len(content) == product.size
    import hashlib

    assert hashlib.md5(content, usedforsecurity=False).hexdigest() == product.digests[0]
    status, _, body = cdse.handle("GET", f"/odata/v1/Products({product.id})", "", {}, b"")
    assert status == 200 and json.loads(body)["Name"] == product.name
