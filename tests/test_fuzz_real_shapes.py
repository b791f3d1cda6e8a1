"""Real-shape fuzzing: hypothesis takes the real payloads of tests/fixtures (a CDSE product, a push
notification, CDSE STAC items), perturbs one field (its type, its range, its absence, its case, a timestamp's
offset) and puts it between two good neighbours. For every source the invariant is: the good neighbours are
recorded, the bad one is recorded or reported (never an exception that costs its page or answers 500), and
nothing stored breaks a reader. 5,000 cases per source; what they kept is then recorded in PostgreSQL, read
back and turned into messages (checked against the schema) and object keys, as the relay and downloader do."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from db import UNASSIGNED_SINK, GranuleRecord, record_granules
from link_fetcher import relay
from link_fetcher.cdse.notifications import InvalidNotification, parse_notifications
from link_fetcher.cdse.products import Criteria, ListedProduct, MalformedProduct
from link_fetcher.cdse.search import decode_page
from link_fetcher.downloader import objects
from link_fetcher.fetching.fetch import _published, select_records
from link_fetcher.push.decisions import decide
from link_fetcher.stac.items import ItemCriteria, rejection_reason, to_record
from link_fetcher.stac.timerange import TimeRange
from tests.factories import FIXTURES, PUSH_FIXTURE, cdse_product

CASES = 5000
FUZZ = settings(max_examples=CASES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
NOW = dt.datetime(2024, 9, 13, tzinfo=dt.UTC)
EVERYTHING = Criteria(allowed_tiles=frozenset({"28PHQ"}))  # keeps what the fixture's tile holds
STAC_ITEMS = json.loads((FIXTURES / "cdse" / "stac-sentinel-2-l2a-items.json").read_text())["features"]
STAC_WINDOW = TimeRange(dt.datetime(2026, 6, 28, tzinfo=dt.UTC), dt.datetime(2026, 6, 29, tzinfo=dt.UTC))

# --- perturbations -----------------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["\x00", "T28PHQ\x00", "S2MSI1C\x00", "a/b", "..", " "]),  # hostile text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """RFC 3339-ish text: any year, any offset (within what Python parses), with or without zone."""
    year = draw(st.integers(1, 9999))
    when = dt.datetime(year, draw(st.integers(1, 12)), draw(st.integers(1, 28)), draw(st.integers(0, 23)))
    text_value = when.isoformat(timespec=draw(st.sampled_from(["seconds", "milliseconds", "microseconds"])))
    zone = draw(st.one_of(st.just("Z"), st.just(""), st.integers(-23 * 60 - 59, 23 * 60 + 59)))
    if isinstance(zone, int):
        sign, minutes = ("+" if zone >= 0 else "-"), abs(zone)
        zone = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return text_value + zone


def _case(value: Any) -> Any:
    return value.swapcase() if isinstance(value, str) else value


@st.composite
def perturbation(draw: st.DrawFn, paths: list[tuple[Any, ...]], timestamp_paths: set[tuple[Any, ...]]):
    """(path, how, new value) for one field of a document."""
    path = draw(st.sampled_from(paths))
    how = draw(
        st.sampled_from(["type", "absent", "case", "range"] + (["offset"] * 2 if path in timestamp_paths else []))
    )
    if how == "range" or how == "offset":
        value = draw(timestamps()) if path in timestamp_paths else draw(st.integers(-(2**70), 2**70))
    elif how == "type":
        value = draw(json_values)
    else:
        value = None
    return path, how, value


def perturbed(document: dict[str, Any], change: tuple[tuple[Any, ...], str, Any]) -> dict[str, Any]:
    path, how, value = change
    document = copy.deepcopy(document)
    parent: Any = document
    for key in path[:-1]:
        try:
            parent = parent[key]
        except (KeyError, IndexError, TypeError):
            return document
    last = path[-1]
    try:
        if how == "absent":
            del parent[last]
        elif how == "case":
            parent[last] = _case(parent[last])
        else:
            parent[last] = value
    except (KeyError, IndexError, TypeError):
        pass
    return document


PRODUCT = PUSH_FIXTURE["value"]
PRODUCT_PATHS = [
    ("Id",),
    ("Name",),
    ("ContentLength",),
    ("PublicationDate",),
    ("ContentDate",),
    ("ContentDate", "Start"),
    ("ContentDate", "End"),
    ("Checksum",),
    ("Checksum", 0),
    ("Checksum", 0, "Value"),
    ("Checksum", 0, "Algorithm"),
    ("Checksum", 1, "Value"),
    ("Online",),
    ("Attributes",),
    *(("Attributes", index, "Value") for index in range(len(PRODUCT["Attributes"]))),
    *(("Attributes", index, "Name") for index in range(len(PRODUCT["Attributes"]))),
]
PRODUCT_TIMESTAMPS = {("PublicationDate",), ("ContentDate", "Start"), ("ContentDate", "End")}


def fresh_product() -> dict[str, Any]:
    return cdse_product(product_id=str(uuid.uuid4()))


# --- what is stored must be readable ------------------------------------------------------------------------


def store_and_read_back(engine: Engine, records: list[GranuleRecord]) -> int:
    """Record everything the cases kept, then read every row back and build what the relay and the downloader
    build from it. Returns the rows read."""
    with engine.begin() as conn:
        record_granules(conn, records, [UNASSIGNED_SINK])
    with engine.connect() as conn:
        rows = [dict(row) for row in conn.execute(text("SELECT * FROM granule")).mappings()]
    for row in rows:
        relay.to_message(row)  # checked against docs/to-download.schema.json (conftest)
        with contextlib.suppress(ValueError):  # a name unusable as a key: its download fails alone, saying so
            objects.object_key(row)
    return len(rows)


# --- polling -------------------------------------------------------------------------------------------------


def test_search_pages_with_one_perturbed_product(engine: Engine) -> None:
    kept: list[GranuleRecord] = []

    @FUZZ
    @given(change=perturbation(PRODUCT_PATHS, PRODUCT_TIMESTAMPS))
    def case(change) -> None:
        first, bad, last = fresh_product(), perturbed(fresh_product(), change), fresh_product()
        page = decode_page(json.dumps({"@odata.count": 3, "value": [first, bad, last]}).encode())
        assert len(page.products) == 3
        assert isinstance(page.products[0], ListedProduct) and isinstance(page.products[2], ListedProduct)
        assert len(_published(page.products)) == 3  # the page still pages
        records, rejected = select_records(page.products, EVERYTHING, "https://download.example", NOW)
        ids = {record.id for record in records}
        assert {first["Id"], last["Id"]} <= ids
        assert isinstance(page.products[1], MalformedProduct) == (rejected["malformed"] == 1)
        kept.extend(records)

    case()
    assert store_and_read_back(engine, kept) >= 2


# --- push ----------------------------------------------------------------------------------------------------

NOTIFICATION_PATHS = [
    ("SubscriptionEvent",),
    ("value",),
    ("ProductId",),
    ("NotificationDate",),
    *(("value", *path) for path in PRODUCT_PATHS),
]
NOTIFICATION_TIMESTAMPS = {("NotificationDate",), *(("value", *path) for path in PRODUCT_TIMESTAMPS)}


def fresh_notification() -> dict[str, Any]:
    return {**PUSH_FIXTURE, "value": fresh_product()}


def test_push_arrays_with_one_perturbed_notification(engine: Engine) -> None:
    kept: list[GranuleRecord] = []

    @FUZZ
    @given(change=perturbation(NOTIFICATION_PATHS, NOTIFICATION_TIMESTAMPS), alone=st.booleans())
    def case(change, alone: bool) -> None:
        first, bad, last = fresh_notification(), perturbed(fresh_notification(), change), fresh_notification()
        body = json.dumps(bad if alone else [first, bad, last]).encode()
        try:
            parsed = parse_notifications(body)
        except InvalidNotification as exc:  # the 400: it names where
            assert alone and str(exc) and "\n" not in str(exc)
            return
        decisions = [decide(n, EVERYTHING, NOW, "https://download.example") for n in parsed.notifications]
        ids = {decision.record.id for decision in decisions}
        if not alone:
            assert {first["value"]["Id"], last["value"]["Id"]} <= ids
            assert len(parsed.notifications) + len(parsed.malformed) == 3
        kept.extend(decision.record for decision in decisions if decision.kept)

    case()
    assert store_and_read_back(engine, kept) >= 2


# --- STAC ----------------------------------------------------------------------------------------------------

STAC_PATHS = [
    ("id",),
    ("properties",),
    ("assets",),
    ("links",),
    *(("properties", key) for key in STAC_ITEMS[0]["properties"]),
    ("properties", "_private", "product_uuid"),
]
STAC_TIMESTAMPS = {
    ("properties", key) for key in ("datetime", "start_datetime", "end_datetime", "published", "created")
}


def fresh_item(index: int) -> dict[str, Any]:
    item = copy.deepcopy(STAC_ITEMS[index % 2])
    item["id"] = f"{item['id']}_{uuid.uuid4().hex[:8]}"
    item["assets"] = {"B04": {"href": f"https://eodata.example/{item['id']}/B04.jp2"}}
    return item


def test_stac_pages_with_one_perturbed_item(engine: Engine) -> None:
    kept: list[GranuleRecord] = []
    criteria = ItemCriteria(window=STAC_WINDOW, max_cloud=100)

    @FUZZ
    @given(change=perturbation(STAC_PATHS, STAC_TIMESTAMPS))
    def case(change) -> None:
        page = [fresh_item(0), perturbed(fresh_item(1), change), fresh_item(0)]
        reasons = [rejection_reason(item, criteria) for item in page]
        assert reasons[0] is None and reasons[2] is None
        records = [
            to_record(item, collection="sentinel-2-l2a", bands=(), api_url="https://stac.example/v1")
            for item, reason in zip(page, reasons, strict=True)
            if reason is None
        ]
        kept.extend(records)

    case()
    assert store_and_read_back(engine, kept) >= 2


def drawn_paths(paths: list[tuple[Any, ...]], timestamp_paths: set[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    seen: set[tuple[Any, ...]] = set()

    # Derandomized: the same draws every run, so this checks the strategies, not the luck of one seed.
    @settings(max_examples=800, database=None, deadline=None, derandomize=True)
    @given(change=perturbation(paths, timestamp_paths))
    def draw(change) -> None:
        seen.add(change[0])

    draw()
    return seen


@pytest.mark.unit
def test_the_perturbations_reach_every_path() -> None:
    """The strategies are not vacuous: each path of each source is drawn and changed."""
    for paths, timestamp_paths in (
        (PRODUCT_PATHS, PRODUCT_TIMESTAMPS),
        (NOTIFICATION_PATHS, NOTIFICATION_TIMESTAMPS),
        (STAC_PATHS, STAC_TIMESTAMPS),
    ):
        assert drawn_paths(paths, timestamp_paths) == set(paths)
