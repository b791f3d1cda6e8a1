"""A simulated CDSE for the twin's month: Sentinel-2 products at their real daily volume, when they become visible
in search, their reprocessings and deletions, and the notifications a subscription would receive.

Deterministic from a seed: every product is computed from (seed, acquisition day, platform, level, tile,
generation) alone, and its Id encodes that key, so a product is found again from its Id without an index and a
day is generated only when it is asked for.

Volume (derived, docs/operations.md "The twin's month"): Sentinel-2 images land on descending passes of 143
relative orbits in a 10-day cycle per satellite, with a 290 km swath, in MGRS tiles of 110 km. A tile centred at
latitude φ is touched by (290 + 110) / (40,075 / 143 · cos φ) relative orbits; over the 18,952 tiles of the HLS
list that gives ~4,000 L1C products per satellite per day. The world serves them on every tile of the list for
three platforms (S2A, S2B, S2C) and two levels (L1C, L2A): ~24,000 products a day.

Serve it with `WorldCdse` (the fakes of tests/fakes/ behind one URL): the catalogue asks the world for its
candidates (`CatalogueSource`) and applies CDSE's rules itself; a product is visible in search from its
`visible_at` (after its PublicationDate for a late-visible one) until its deletion, when it moves to
DeletedProducts.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import functools
import json
import math
import random
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from link_fetcher.cdse.products import load_allowed_tiles
from link_fetcher.settings import KNOWN_PLATFORMS, PACKAGED_TILES_FILE
from tests.fakes.cdse_catalogue import Entity, FakeCatalogue, SearchHint
from tests.fakes.cdse_download import digests, synthetic_bytes
from tests.fakes.cdse_identity import TOKEN_PATH, FakeIdentity
from tests.fakes.cdse_subscriptions import FakeSubscriptions
from tests.fakes.http_server import Reply, json_reply

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "push-granule-created.json"
LEVELS = {"S2MSI1C": "L1C", "S2MSI2A": "L2A"}
CYCLE_DAYS = 10
RELATIVE_ORBITS = 143
SWATH_KM, TILE_KM, EQUATOR_KM = 290.0, 110.0, 40_075.0
LATITUDE_BANDS = "CDEFGHJKLMNPQRSTUVWX"
BASELINE, REPROCESSED_BASELINE = "N0511", "N0512"
DELETION_CAUSES = ("Corrupted product", "Duplicated product")
_PACKED_BITS = 40  # day 16 | platform 2 | level 1 | tile 16 | generation 5
ISO_MS = "milliseconds"
_PRODUCT_VALUE = re.compile(r"^/odata/v1/Products\((?P<id>[^)]+)\)/\$value$")


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec=ISO_MS).replace("+00:00", "Z")


_MASK64 = (1 << 64) - 1
# What a draw is for: each purpose has its own stream of numbers for the same key.
TILE, ACQUISITION, PRODUCT, REPROCESSED, PUSH, ID, ID_MASK, BYTES = range(1, 9)


def _mix(value: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of a 64-bit integer."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def _hash64(seed: int, purpose: int, value: int) -> int:
    return _mix((seed * 0x100000001B3) ^ _mix((purpose << 56) ^ value))


class _Draws:
    """Uniform numbers in [0, 1) for one (seed, purpose, key): the same three always give the same numbers."""

    __slots__ = ("_base", "_index")

    def __init__(self, seed: int, purpose: int, key: int) -> None:
        self._base, self._index = _hash64(seed, purpose, key), 0

    def random(self) -> float:
        self._index += 1
        return _mix(self._base + self._index) / 18446744073709551616.0

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def below(self, count: int) -> int:
        return int(self.random() * count)


def tile_centre(tile: str) -> tuple[float, float]:
    """(latitude, longitude) of an MGRS tile's centre, to its latitude band (8°) and UTM zone (6°)."""
    zone, band = int(tile[:2]), tile[2]
    latitude = 78.0 if band == "X" else -80.0 + 8 * LATITUDE_BANDS.index(band) + 4
    return latitude, -180.0 + 6 * (zone - 1) + 3


def relative_orbits_over(latitude: float) -> float:
    """How many relative orbits of one satellite's 10-day cycle touch a tile at `latitude` (≥ 1, ≤ 10)."""
    spacing = EQUATOR_KM / RELATIVE_ORBITS * max(math.cos(math.radians(latitude)), 0.01)
    return min(max((SWATH_KM + TILE_KM) / spacing, 1.0), float(CYCLE_DAYS))


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """The month's shape and its rates. Rates are per product unless said otherwise."""

    seed: int = 20261205
    start: dt.date = dt.date(2026, 11, 1)
    days: int = 30  # publication days
    platforms: tuple[str, ...] = KNOWN_PLATFORMS
    scope_tiles: int = 200  # tiles the system is scoped to (ALLOWED_TILES_FILE), spread over the list
    late_share: float = 0.03  # visible in search 30 min to 12 h after publication
    very_late_share: float = 0.005  # visible 1 to 3 days after publication
    reprocessing_share: float = 0.003  # reprocessed 1 to 4 days later (another baseline, a new Id)
    deletion_share: float = 0.004  # withdrawn 6 h to 4 days after becoming visible
    push_lost_share: float = 0.02
    push_duplicated_share: float = 0.01
    push_delayed_share: float = 0.05  # 1 to 6 hours late (others: seconds to minutes)
    product_bytes: int = 4096  # what the download serves (the real size is for the cost estimate)

    @property
    def start_time(self) -> dt.datetime:
        return dt.datetime.combine(self.start, dt.time(), tzinfo=dt.UTC)

    @property
    def end_time(self) -> dt.datetime:
        """The end of the last publication day."""
        return self.start_time + dt.timedelta(days=self.days)


class ProductKey(NamedTuple):
    day: int  # acquisition day, from config.start
    platform: int
    level: int  # 0 L1C, 1 L2A
    tile: int  # index in the tile list
    generation: int = 0  # 0 the first processing, 1 its reprocessing

    @property
    def packed(self) -> int:
        """The key in 40 bits (day 16, platform 2, level 1, tile 16, generation 5); days before the start wrap."""
        day = self.day & 0xFFFF
        return (day << 24) | (self.platform << 22) | (self.level << 21) | (self.tile << 5) | self.generation


@dataclasses.dataclass(eq=False, slots=True)
class WorldProduct:
    """One product of the world (not to be changed). Duck-types tests.fakes.cdse_catalogue.Entity for searches."""

    key: ProductKey
    id: str
    name: str
    platform: str
    product_type: str
    tile: str
    relative_orbit: int
    sensing: dt.datetime
    published: dt.datetime
    visible_at: dt.datetime
    deleted_at: dt.datetime | None
    deletion_cause: str | None
    supersedes: str | None  # the Id of the product this one reprocesses
    seed: int
    size: int
    _digests: tuple[str, str] | None = None
    _json: bytes | None = None
    collection: str = "SENTINEL-2"

    @property
    def attributes(self) -> dict[str, str]:
        return {
            "productType": self.product_type,
            "platformSerialIdentifier": self.platform[-1],
            "tileId": self.tile,
            "platformShortName": "SENTINEL-2",
        }

    def value(self, field: str) -> dt.datetime:
        return self.published if field == "PublicationDate" else self.sensing

    def visible(self, now: dt.datetime) -> bool:
        return self.visible_at <= now and (self.deleted_at is None or now < self.deleted_at)

    @property
    def digests(self) -> tuple[str, str]:
        if self._digests is None:
            self._digests = digests(self.seed, self.size)
        return self._digests

    @property
    def full_json(self) -> bytes:
        if self._json is None:
            self._json = json.dumps(product_json(self)).encode()
        return self._json

    @property
    def bare_json(self) -> bytes:
        return json.dumps({k: v for k, v in product_json(self).items() if k != "Attributes"}).encode()

    def content(self) -> bytes:
        return b"".join(synthetic_bytes(self.seed, self.size))


@dataclasses.dataclass(frozen=True, eq=False)
class DeletedEntity:
    """A DeletedProducts entity (Entity for searches), of a withdrawn WorldProduct."""

    product: WorldProduct
    collection: str = "SENTINEL-2"

    @property
    def id(self) -> str:
        return self.product.id

    @property
    def attributes(self) -> dict[str, str]:
        return {}

    def value(self, field: str) -> dt.datetime:
        assert self.product.deleted_at is not None
        return self.product.deleted_at

    @property
    def full_json(self) -> bytes:
        return json.dumps(deleted_json(self.product)).encode()

    bare_json = full_json


@functools.cache
def _fixture_value() -> dict[str, Any]:
    value: dict[str, Any] = json.loads(FIXTURE.read_text())["value"]
    return value


def product_json(product: WorldProduct) -> dict[str, Any]:
    """The OData product (as the push fixture's `value`), with this product's identity, dates and checksums."""
    base = _fixture_value()
    md5, b3 = product.digests
    level = LEVELS[product.product_type]
    s3_path = f"/eodata/Sentinel-2/MSI/{level}/{product.sensing:%Y/%m/%d}/{product.name}"
    checksum_date = iso(product.published)
    checksums = [
        {"Value": md5, "Algorithm": "MD5", "ChecksumDate": checksum_date},
        {"Value": b3, "Algorithm": "BLAKE3", "ChecksumDate": checksum_date},
    ]
    sensing = iso(product.sensing)
    replaced = {
        "tileId": product.tile,
        "platformSerialIdentifier": product.platform[-1],
        "productType": product.product_type,
        "beginningDateTime": sensing,
        "endingDateTime": sensing,
        "relativeOrbitNumber": product.relative_orbit,
        "processingLevel": f"S2MSI{level[1:]}",
        "granuleIdentifier": product.name.removesuffix(".SAFE"),
    }
    attributes = [
        {**attribute, "Value": replaced[attribute["Name"]]} if attribute["Name"] in replaced else attribute
        for attribute in base["Attributes"]
    ]
    download = f"https://catalogue.dataspace.copernicus.eu/odata/v1/Products({product.id})/$value"
    return {
        **base,
        "Id": product.id,
        "Name": product.name,
        "ContentLength": product.size,
        "OriginDate": iso(product.published - dt.timedelta(minutes=12)),
        "PublicationDate": iso(product.published),
        "ModificationDate": iso(product.published + dt.timedelta(seconds=45)),
        "S3Path": s3_path,
        "Checksum": checksums,
        "ContentDate": {"Start": sensing, "End": sensing},
        "Attributes": attributes,
        "Assets": [{**asset, "S3Path": s3_path} for asset in base["Assets"]],
        "Locations": [
            {"FormatType": "Extracted", "DownloadLink": download, "ContentLength": product.size,
             "Checksum": checksums, "S3Path": s3_path}
        ],
    }  # fmt: skip


def deleted_json(product: WorldProduct) -> dict[str, Any]:
    assert product.deleted_at is not None
    return {
        "@odata.context": "$metadata#DeletedProducts/$entity",
        "@odata.mediaContentType": "application/octet-stream",
        "Id": product.id,
        "Name": product.name,
        "ContentType": "application/octet-stream",
        "ContentLength": product.size,
        "OriginDate": iso(product.published - dt.timedelta(minutes=12)),
        "DeletionDate": iso(product.deleted_at),
        "DeletionCause": product.deletion_cause,
        "ContentDate": {"Start": iso(product.sensing), "End": iso(product.sensing)},
    }


_Cache = collections.OrderedDict[tuple[int, int, frozenset[int] | None], list["WorldProduct"]]


@dataclasses.dataclass(frozen=True)
class Notification:
    """One POST CDSE makes to a subscription (or one entry of a PULL queue)."""

    at: dt.datetime  # when CDSE sends it
    event: str  # created | deleted
    product: WorldProduct
    copy: int = 0  # 1 for the duplicate of a duplicated notification

    def body(self, subscription_id: str) -> dict[str, Any]:
        value = product_json(self.product) if self.event == "created" else deleted_json(self.product)
        return {
            "@odata.context": "$metadata#Notification/$entity",
            "SubscriptionEvent": self.event,
            "ProductId": self.product.id,
            "ProductName": self.product.name,
            "SubscriptionId": subscription_id,
            "NotificationDate": iso(self.at),
            "AckId": f"{self.product.id}:{self.event}:{self.copy}",
            "value": value,
        }


class World:
    """The products of `config.days` publication days from `config.start` over `tiles` (default: the HLS list)."""

    def __init__(self, config: WorldConfig = WorldConfig(), *, tiles: Sequence[str] | None = None) -> None:
        self.config = config
        self.tiles: tuple[str, ...] = tuple(
            sorted(tiles if tiles is not None else load_allowed_tiles(PACKAGED_TILES_FILE))
        )
        self._tile_index = {tile: index for index, tile in enumerate(self.tiles)}
        self._longitudes = [tile_centre(tile)[1] for tile in self.tiles]
        # Per platform, per day of the cycle: the tiles imaged (a tile is under k relative orbits, k on its latitude).
        self._imaged: dict[str, list[list[int]]] = {p: [[] for _ in range(CYCLE_DAYS)] for p in KNOWN_PLATFORMS}
        self._orbits: dict[tuple[str, int, int], int] = {}
        for index, tile in enumerate(self.tiles):
            latitude, _ = tile_centre(tile)
            factor = relative_orbits_over(latitude)
            for platform_index, platform in enumerate(KNOWN_PLATFORMS):
                rng = random.Random(_hash64(config.seed, TILE, (index << 2) | platform_index))
                passes = int(factor) + (rng.random() < factor - int(factor))
                for cycle_day in rng.sample(range(CYCLE_DAYS), min(passes, CYCLE_DAYS)):
                    self._imaged[platform][cycle_day].append(index)
                    self._orbits[(platform, index, cycle_day)] = 1 + rng.randrange(RELATIVE_ORBITS)
        self.scope: frozenset[str] = frozenset(self._spread(config.scope_tiles))
        self._acquired_cache: _Cache = collections.OrderedDict()
        self._published_cache: _Cache = collections.OrderedDict()
        self._deleted_cache: _Cache = collections.OrderedDict()
        self._notes_cache: collections.OrderedDict[tuple[int, int, str], list[Notification]] = collections.OrderedDict()

    def _spread(self, count: int) -> list[str]:
        """`count` tiles spread over the list (every n-th after a seeded shift), so every latitude is in scope."""
        if count >= len(self.tiles):
            return list(self.tiles)
        step = len(self.tiles) / count
        shift = random.Random(self.config.seed).random() * step
        return [self.tiles[int(shift + i * step)] for i in range(count)]

    # ---- identity ----

    def _encode(self, key: ProductKey) -> str:
        packed = key.packed
        top = _hash64(self.config.seed, ID, packed) & ~(0xF << 12) | (4 << 12)
        mask = _hash64(self.config.seed, ID_MASK, top)
        low = ((mask ^ packed) & ((1 << 62) - 1)) | (0b10 << 62)
        return str(uuid.UUID(int=(top << 64) | low))

    def _decode(self, product_id: str) -> ProductKey | None:
        try:
            number = uuid.UUID(product_id).int
        except ValueError:
            return None
        top, low = number >> 64, number & ((1 << 64) - 1)
        packed = (low ^ _hash64(self.config.seed, ID_MASK, top)) & ((1 << _PACKED_BITS) - 1)
        day = packed >> 24
        day -= 0x10000 if day & 0x8000 else 0  # days before the start
        key = ProductKey(day, (packed >> 22) & 3, (packed >> 21) & 1, (packed >> 5) & 0xFFFF, packed & 31)
        valid = key.platform < len(KNOWN_PLATFORMS) and key.tile < len(self.tiles) and key.generation < 2
        return key if valid and self._encode(key) == product_id.lower() else None

    # ---- products ----

    def _make(self, key: ProductKey) -> WorldProduct | None:
        """The product of `key`, or None when there is none (not imaged that day, or no such reprocessing)."""
        platform = KNOWN_PLATFORMS[key.platform]
        orbit = self._orbits.get((platform, key.tile, key.day % CYCLE_DAYS))
        if orbit is None or platform not in self.config.platforms:
            return None
        config, tile, packed = self.config, self.tiles[key.tile], key.packed
        if key.generation and _Draws(config.seed, REPROCESSED, packed - 1).random() >= config.reprocessing_share:
            return None
        # The image: sensed at 10:30 local solar time; L1C published 1.5 h to a day later, L2A after its L1C.
        image = _Draws(config.seed, ACQUISITION, packed >> 21 << 21 | key.tile << 5)
        solar_hours = 10.5 - self._longitudes[key.tile] / 15 + image.uniform(-0.1, 0.1)
        sensing = config.start_time + dt.timedelta(days=key.day, hours=solar_hours)
        sensing = sensing.replace(microsecond=image.below(1000) * 1000)
        delay_hours = 1.5 + min(-1.5 * math.log(1 - image.random()), 18) + key.level * image.uniform(0.2, 2)
        draws = _Draws(config.seed, PRODUCT, packed)
        published = sensing + dt.timedelta(hours=delay_hours, days=draws.uniform(1, 4) if key.generation else 0)
        published = published.replace(microsecond=published.microsecond // 1000 * 1000)
        lateness = draws.random()
        if lateness < config.very_late_share:
            visible_at = published + dt.timedelta(days=draws.uniform(1, 3))
        elif lateness < config.very_late_share + config.late_share:
            visible_at = published + dt.timedelta(hours=draws.uniform(0.5, 12))
        else:
            visible_at = published
        deleted_at, cause = None, None
        if draws.random() < config.deletion_share:
            deleted_at = visible_at + dt.timedelta(hours=draws.uniform(6, 96))
            deleted_at = deleted_at.replace(microsecond=deleted_at.microsecond // 1000 * 1000)
            cause = DELETION_CAUSES[draws.below(len(DELETION_CAUSES))]
        level = "L2A" if key.level else "L1C"
        baseline = REPROCESSED_BASELINE if key.generation else BASELINE
        discriminator = published - dt.timedelta(minutes=draws.uniform(10, 40))
        return WorldProduct(
            key,
            self._encode(key),
            f"{platform}_MSI{level}_{sensing:%Y%m%dT%H%M%S}_{baseline}_R{orbit:03d}_T{tile}_"
            f"{discriminator:%Y%m%dT%H%M%S}.SAFE",
            platform,
            "S2MSI2A" if key.level else "S2MSI1C",
            tile,
            orbit,
            sensing,
            published,
            visible_at,
            deleted_at,
            cause,
            self._encode(key._replace(generation=0)) if key.generation else None,
            _hash64(config.seed, BYTES, packed) & 0x7FFFFFFF,
            config.product_bytes + draws.below(64),
        )

    def _acquired(self, day: int, level: int, tiles: frozenset[int] | None = None) -> list[WorldProduct]:
        """Every product (both generations) of the images of acquisition day `day` at `level`, on `tiles` (all)."""
        cache_key = (day, level, tiles)
        if (cached := self._acquired_cache.get(cache_key)) is not None:
            self._acquired_cache.move_to_end(cache_key)
            return cached
        products = []
        for platform_index, platform in enumerate(KNOWN_PLATFORMS):
            for tile in self._imaged[platform][day % CYCLE_DAYS]:
                if tiles is not None and tile not in tiles:
                    continue
                for generation in (0, 1):
                    product = self._make(ProductKey(day, platform_index, level, tile, generation))
                    if product is not None:
                        products.append(product)
        self._acquired_cache[cache_key] = products
        while len(self._acquired_cache) > 24:
            self._acquired_cache.popitem(last=False)
        return products

    def _days(self, moment: dt.datetime) -> int:
        return (moment.date() - self.config.start).days

    def published_on(self, day: int, level: int = 0, tiles: frozenset[int] | None = None) -> list[WorldProduct]:
        """The products whose PublicationDate falls on publication day `day` (from config.start), if it is one of
        the world's days (products are published only on those)."""
        if not 0 <= day < self.config.days:
            return []
        cache_key = (day, level, tiles)
        if (cached := self._published_cache.get(cache_key)) is not None:
            self._published_cache.move_to_end(cache_key)
            return cached
        # A first processing is published within a day of its image, a reprocessing up to 5 days after it.
        products = [
            product
            for acquired in range(day - 5, day + 1)
            for product in self._acquired(acquired, level, tiles)
            if self._days(product.published) == day
        ]
        self._published_cache[cache_key] = products
        while len(self._published_cache) > 24:
            self._published_cache.popitem(last=False)
        return products

    def deleted_on(self, day: int, level: int = 0, tiles: frozenset[int] | None = None) -> list[WorldProduct]:
        """The products of the world's days withdrawn on day `day` (from config.start)."""
        cache_key = (day, level, tiles)
        if (cached := self._deleted_cache.get(cache_key)) is None:
            # Deleted at most 4 days after becoming visible, at most 3 days after publication.
            products = (p for d in range(day - 8, day + 1) for p in self.published_on(d, level, tiles))
            cached = [p for p in products if p.deleted_at is not None and self._days(p.deleted_at) == day]
            self._deleted_cache[cache_key] = cached
            while len(self._deleted_cache) > 24:
                self._deleted_cache.popitem(last=False)
        return cached

    def product(self, product_id: str) -> WorldProduct | None:
        key = self._decode(product_id)
        return self._make(key) if key is not None else None

    def scope_indexes(self) -> frozenset[int]:
        return frozenset(self._tile_index[tile] for tile in self.scope)

    def month(self, level: int = 0, *, in_scope: bool = True) -> Iterator[WorldProduct]:
        """Every product of the world's days at `level` (default: on the scope's tiles only)."""
        tiles = self.scope_indexes() if in_scope else None
        for day in range(self.config.days):
            yield from self.published_on(day, level, tiles)

    def daily_volume(self, day: int = 0) -> dict[str, int]:
        """Products published on a day, per level and platform (`S2MSI1C S2A`: n)."""
        volume: collections.Counter[str] = collections.Counter()
        for level in (0, 1):
            for product in self.published_on(day, level):
                volume[f"{product.product_type} {product.platform}"] += 1
        return dict(sorted(volume.items()))

    def write_scope(self, path: Path) -> Path:
        """The ALLOWED_TILES_FILE of the scope."""
        path.write_text("".join(f"{tile}\n" for tile in sorted(self.scope)), encoding="utf-8")
        return path

    # ---- notifications ----

    def notifications_on(
        self, day: int, *, level: int = 0, keep: Callable[[WorldProduct], bool] | None = None
    ) -> list[Notification]:
        """The notifications CDSE sends on day `day` (from config.start) for `level` (a subscription's product
        type), in sending order, lost ones left out; `keep` narrows the products notified."""
        # Sent at most a day after the publication or the deletion.
        sent = [n for d in range(day - 2, day + 1) for n in self._notified(d, level, "created")]
        sent += [n for d in range(day - 1, day + 1) for n in self._notified(d, level, "deleted")]
        start = self.config.start_time + dt.timedelta(days=day)
        end = start + dt.timedelta(days=1)
        return sorted(
            (n for n in sent if start <= n.at < end and (keep is None or keep(n.product))), key=lambda n: n.at
        )

    def _notified(self, day: int, level: int, event: str) -> list[Notification]:
        """The notifications of the products published (created) or deleted on `day`, whenever they are sent."""
        cache_key = (day, level, event)
        if (cached := self._notes_cache.get(cache_key)) is None:
            if event == "created":
                cached = [n for p in self.published_on(day, level) for n in self._fates(p, event, p.published)]
            else:
                cached = [
                    n for p in self.deleted_on(day, level) if p.deleted_at for n in self._fates(p, event, p.deleted_at)
                ]
            self._notes_cache[cache_key] = cached
            while len(self._notes_cache) > 12:
                self._notes_cache.popitem(last=False)
        return cached

    def _fates(self, product: WorldProduct, event: str, happened: dt.datetime) -> list[Notification]:
        """A notification's fate: lost, delayed (seconds to minutes, or hours), sometimes sent twice; the order of
        sending follows the delays, so notifications overtake each other."""
        config = self.config
        rng = _Draws(config.seed, PUSH, product.key.packed << 1 | (event == "deleted"))
        if rng.random() < config.push_lost_share:
            return []
        if rng.random() < config.push_delayed_share:
            delay = dt.timedelta(hours=rng.uniform(1, 6))
        else:
            delay = dt.timedelta(seconds=rng.uniform(2, 600))
        sent = [Notification(happened + delay, event, product)]
        if rng.random() < config.push_duplicated_share:
            sent.append(Notification(happened + delay + dt.timedelta(seconds=rng.uniform(1, 900)), event, product, 1))
        return sent

    def lost(self, product: WorldProduct, event: str = "created") -> bool:
        return not self._fates(product, event, product.published)


class WorldSource:
    """The world as the fake catalogue's `CatalogueSource`, at the simulated time `now()`."""

    def __init__(self, world: World, now: Callable[[], dt.datetime]) -> None:
        self.world = world
        self.now = now

    def _days(self, hint: SearchHint) -> range:
        config = self.world.config
        first = self.world._days(hint.start) if hint.start else 0
        last = self.world._days(hint.end - dt.timedelta(microseconds=1)) if hint.end else config.days + 10
        return range(max(first, -10), min(last, config.days + 10) + 1)

    def candidates(self, hint: SearchHint) -> Iterable[Entity]:
        now = self.now()
        wanted = hint.attributes.get("productType")
        levels = [level for level, kind in enumerate(LEVELS) if wanted in (None, kind)]
        platform = hint.attributes.get("platformSerialIdentifier")
        found: list[Entity] = []
        for level in levels:
            for day in self._days(hint):
                if hint.deleted:
                    found.extend(
                        DeletedEntity(p)
                        for p in self.world.deleted_on(day, level)
                        if p.deleted_at and p.deleted_at <= now
                    )
                else:
                    found.extend(
                        p
                        for p in self.world.published_on(day, level)
                        if (platform is None or p.platform[-1] == platform) and p.visible(now)
                    )
        return found

    def product(self, product_id: str) -> Entity | None:
        product = self.world.product(product_id)
        return product if product is not None and product.visible(self.now()) else None


class WorldCdse(FakeSubscriptions):  # type: ignore[misc]  # the fakes (tests/) are not type-checked
    """Everything the stack asks of CDSE behind one URL, at simulated time `now()`: Keycloak tokens, the OData
    catalogue (the world's products, CDSE's rules, faults from `fault_policy`), the Subscriptions API with its
    PULL queues, and product downloads (the world's bytes, their checksums as announced)."""

    def __init__(
        self,
        world: World,
        now: Callable[[], dt.datetime],
        *,
        username: str = "cdse-user",
        password: str = "cdse-password",  # noqa: S107 - the fake account's
        fault_policy: Callable[[str, str], str | None] | None = None,
    ) -> None:
        catalogue = FakeCatalogue(WorldSource(world, now), fault_policy=fault_policy)
        super().__init__(FakeIdentity(username, password), catalogue)
        self.world, self.now = world, now
        self.downloads: collections.Counter[str] = collections.Counter()

    def handle(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> Reply:
        if path == TOKEN_PATH:
            return self.identity.handle(method, path, query, headers, body)
        if match := _PRODUCT_VALUE.match(path):
            return self._download(match["id"], headers)
        return super().handle(method, path, query, headers, body)

    def _download(self, product_id: str, headers: dict[str, str]) -> Reply:
        if not self.identity.is_valid(headers.get("authorization")):
            return json_reply(401, {"detail": "Expired signature!"})
        # Stored from its publication (a late product is late in the search index only) until its deletion.
        product, now = self.world.product(product_id), self.now()
        if product is None or now < product.published or (product.deleted_at and product.deleted_at <= now):
            return json_reply(404, {"detail": f"Product {product_id} not found"})
        with self.lock:
            self.downloads[product.id] += 1
        return 200, {"Content-Type": "application/zip"}, product.content()
