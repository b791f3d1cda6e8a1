"""Test data: granule records and CDSE products shaped like the real fixture."""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

from db import GranuleRecord, record_granules
from db.models import TIMESTAMP_RANGE_CHECKS
from link_fetcher.cdse.products import load_allowed_tiles
from link_fetcher.cdse.search import CdseCatalogue
from link_fetcher.fetching import DayFetcher
from link_fetcher.http import make_session
from link_fetcher.mission import MISSION
from link_fetcher.recording import Recorder
from link_fetcher.settings import PACKAGED_TILES_FILE

FIXTURES = Path(__file__).parent / "fixtures"
PUSH_FIXTURE = json.loads((FIXTURES / "push-granule-created.json").read_text())
ALLOWED_TILES = load_allowed_tiles(PACKAGED_TILES_FILE)  # the packaged HLS list, the default filter


def granule_record(index: int = 0, *, source: str = "search", tile: str = "28PHQ", **overrides: Any) -> GranuleRecord:
    product_id = overrides.pop("id", str(uuid.UUID(int=index + 1)))
    sensing = dt.datetime(2024, 9, 12, 11, 25, 41, tzinfo=dt.UTC) + dt.timedelta(seconds=index)
    values: dict[str, Any] = {
        "id": product_id,
        "filename": f"S2A_MSIL1C_{sensing:%Y%m%dT%H%M%S}_N0511_R137_T{tile}_20240912T133420.SAFE",
        "download_url": f"https://download.dataspace.copernicus.eu/odata/v1/Products({product_id})/$value",
        "source": source,
        "tile_id": tile,
        "platform": "S2A",
        "product_type": "S2MSI1C",
        "size": 132_384_463,
        "checksum": "700a3f2014ab3670408b94e4310924dd",
        "blake3": "fd35ef962ec7a09b190dc4049fe98906cc89f16e1a4322b622a49fc62e3f6e43",
        "sensing_start": sensing,
        "sensing_end": sensing,
        "published": dt.datetime(2024, 9, 12, 14, 52, 6, tzinfo=dt.UTC) + dt.timedelta(seconds=index),
    }
    values.update(overrides)
    # As the sources derive them (link_fetcher.mission), unless a test gives its own.
    values.setdefault("product_name", MISSION.product_name_of(values["filename"]))
    values.setdefault("identity", MISSION.identity(values["product_name"]))
    return GranuleRecord(**values)


# Generation seconds given out, per name prefix and publication day: {key: {product Id: second}}.
_GENERATION_SECONDS: dict[str, dict[str, int]] = {}


def _generation_second(key: str, product_id: str) -> int:
    """The same second for the same Id; products sensed in the same second (many made in one test) never share a
    name, which a hash alone would give them now and then."""
    given = _GENERATION_SECONDS.setdefault(key, {})
    if product_id not in given:
        taken = set(given.values())
        second = zlib.crc32(product_id.encode()) % 86400
        while second in taken:
            second = (second + 1) % 86400
        given[product_id] = second
    return given[product_id]


def cdse_product(
    *,
    product_id: str | None = None,
    platform: str = "S2A",
    tile: str = "28PHQ",
    published: dt.datetime | None = None,
    sensing: dt.datetime | None = None,
    product_type: str = "S2MSI1C",
) -> dict[str, Any]:
    """A product like the fixture's `value`, with its identity, platform, tile and dates replaced."""
    product = copy.deepcopy(PUSH_FIXTURE["value"])
    product_id = product_id or str(uuid.uuid4())
    sensing = sensing or dt.datetime(2024, 9, 12, 11, 25, 41, 24000, tzinfo=dt.UTC)
    published = published or sensing + dt.timedelta(hours=3)
    level = "L2A" if product_type == "S2MSI2A" else "L1C"
    # Each product its own name (the same name is the same product, SPEC §11): the discriminator, a generation
    # time, falls on the publication day at a second the Id picks, the next free one if another Id took it.
    prefix = f"{platform}_MSI{level}_{sensing:%Y%m%dT%H%M%S}_N0511_R137_T{tile}"
    day = published.replace(hour=0, minute=0, second=0, microsecond=0)
    generated = day + dt.timedelta(seconds=_generation_second(f"{prefix}_{day:%Y%m%d}", product_id))
    name = f"{prefix}_{generated:%Y%m%dT%H%M%S}.SAFE"
    iso = lambda value: value.isoformat(timespec="milliseconds").replace("+00:00", "Z")  # noqa: E731
    product.update(
        Id=product_id,
        Name=name,
        PublicationDate=iso(published),
        ContentDate={"Start": iso(sensing), "End": iso(sensing)},
    )
    for attribute in product["Attributes"]:
        if attribute["Name"] == "tileId":
            attribute["Value"] = tile
        elif attribute["Name"] == "platformSerialIdentifier":
            attribute["Value"] = platform[-1]
        elif attribute["Name"] == "productType":
            attribute["Value"] = product_type
        elif attribute["Name"] in ("beginningDateTime", "endingDateTime"):
            attribute["Value"] = iso(sensing)
    return product


def poison_granule(conn: Connection, granule_id: str, column: str = "sensing_start") -> None:
    """Give a recorded granule a timestamp psycopg cannot read back (year 1 BC), as rows written before the
    range checks of migration 0005 may hold: the check is lifted for the write and put back NOT VALID, as the
    migration leaves it on a database that already held such rows."""
    constraint = f"ck_granule_{column}_in_range"
    conn.execute(text(f"ALTER TABLE granule DROP CONSTRAINT {constraint}"))
    conn.execute(text(f"UPDATE granule SET {column} = '0001-01-01T00:00:00+14:00' WHERE id = :id"), {"id": granule_id})
    check = TIMESTAMP_RANGE_CHECKS[f"{column}_in_range"]
    conn.execute(text(f"ALTER TABLE granule ADD CONSTRAINT {constraint} CHECK ({check}) NOT VALID"))


def allowed_ids(products: list[dict[str, Any]]) -> set[str]:
    """The Ids of the CDSE products whose tile is in the packaged HLS list (those the default filter keeps)."""
    return {p["Id"] for p in products if p["Name"].split("_")[5].removeprefix("T") in ALLOWED_TILES}


def record(engine: Engine, count: int, sinks: Sequence[str]) -> list[str]:
    """Record `count` granules (over three tiles) for delivery to `sinks`; their ids."""
    with engine.begin() as conn:
        return record_granules(conn, [granule_record(i, tile=f"{10 + i % 3}ABC") for i in range(count)], list(sinks))


def day_fetcher(
    engine: Engine,
    catalogue_url: str,
    *,
    allowed_tiles: frozenset[str],
    sink_names: Sequence[str],
    max_acquisition_age_days: int = 30,
    page_size: int = 1000,
) -> DayFetcher:
    """A poller of the fake catalogue at `catalogue_url`, retrying fast (tests wait for no backoff)."""
    return DayFetcher(
        Recorder(engine, sink_names=sink_names),
        CdseCatalogue(catalogue_url, session=make_session(backoff=0.01, attempts=5)),
        allowed_tiles=allowed_tiles,
        product_type="S2MSI1C",
        max_acquisition_age_days=max_acquisition_age_days,
        download_url="https://download.example",
        page_size=page_size,
    )
