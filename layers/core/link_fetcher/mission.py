"""The mission profile: everything the code knows about Sentinel-2 as a mission, in one place. Pure.

What a product is called (its name grammar), which platforms exist (S2A, S2B, S2C: `S2` and CDSE's
`platformSerialIdentifier`), CDSE's collection name (also the products' `platformShortName`), the product types
of each processing level and the STAC collections that hold them, and a product's identity (SPEC §9, §11).
Another mission is another `Mission` (and settings), not edits across the code: the rest of the code asks
`MISSION`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

SAFE_SUFFIX = ".SAFE"
OTHER_MISSION = "other_mission"  # the skip reason of a product of a mission not configured (logs, metrics)

# A mission's platform in a product name or a STAC `platform`: `S1A_…`, `S5P_…`, `LC08_…`; `sentinel-1a`.
_MISSION_PREFIX = re.compile(r"^([A-Z][A-Z0-9]{1,3})_")
_STAC_SENTINEL = re.compile(r"^(?:sentinel-?|s)(\d)([a-z])$", re.IGNORECASE)  # sentinel-2a, Sentinel-2B, S2C


@dataclasses.dataclass(frozen=True, slots=True)
class ProductName:
    """A product name read by the mission's grammar: S2A_MSIL1C_20240912T112541_N0511_R137_T28PHQ_20240912T133420."""

    text: str  # the name without `.SAFE`
    platform: str  # S2A
    level: str  # L1C
    sensing: str  # 20240912T112541
    baseline: str  # N0511
    orbit: str  # R137
    tile: str  # 28PHQ
    discriminator: str  # 20240912T133420

    @property
    def identity(self) -> str:
        """The name without processing baseline and discriminator (SPEC §9): two names of one identity are two
        processings of one acquisition. S2A_MSIL1C_20240912T112541_R137_T28PHQ."""
        return f"{self.text[:26]}{self.text[32:44]}"


@dataclasses.dataclass(frozen=True, slots=True)
class Mission:
    """What the code needs to know of one mission."""

    name: str  # for people: "Sentinel-2"
    collection: str  # CDSE's `Collection/Name`, which is also each product's `platformShortName`
    platform_prefix: str  # platform = prefix + serial: S2 + A
    serials: tuple[str, ...]  # the platforms flying, as CDSE's `platformSerialIdentifier`
    name_pattern: re.Pattern[str]  # a whole product name without `.SAFE`, groups as ProductName's fields
    product_types: Mapping[str, str]  # processing level in the name -> CDSE `productType`
    stac_collections: Mapping[str, str]  # a STAC collection id -> the product type its items are
    stac_name_keys: tuple[str, ...]  # item properties that give the product name, first found wins
    default_product_type: str

    @property
    def platforms(self) -> tuple[str, ...]:
        """S2A, S2B, S2C: the platforms one can configure (PLATFORMS)."""
        return tuple(self.platform_prefix + serial for serial in self.serials)

    def known_platforms(self, platforms: Iterable[str]) -> list[str]:
        """`platforms` in upper case, each once; ValueError naming those the mission does not have, or when there
        are none: the one check of PLATFORMS, a schedule's `platforms` and a fetch's `platform`."""
        known = list(dict.fromkeys(platform.strip().upper() for platform in platforms))
        unknown = sorted(set(known) - set(self.platforms))
        if unknown:
            raise ValueError(f"unknown platform(s) {', '.join(unknown)}; expected some of {', '.join(self.platforms)}")
        if not known:
            raise ValueError("at least one platform is needed")
        return known

    def platform(self, serial: str) -> str:
        """`A` -> `S2A`."""
        return self.platform_prefix + serial

    def serial(self, platform: str) -> str:
        """`S2A` -> `A`, CDSE's platformSerialIdentifier."""
        return platform.removeprefix(self.platform_prefix)

    def parse(self, name: str) -> ProductName | None:
        """The parts of a product name (`.SAFE` or not); None when it is not one of this mission's names."""
        match = self.name_pattern.fullmatch(name.removesuffix(SAFE_SUFFIX))
        return ProductName(match[0], *match.groups()) if match else None

    def product_name_of(self, value: object) -> str | None:
        """The product name (without `.SAFE`) that a source gives in any of its forms: an OData / push / pull
        `Name`, a CDSE STAC item `id`, a STAC `s2:product_uri`. None when `value` is no such name (an Earth
        Search item id, another mission's name): then nothing ties it to a product of another source."""
        if not isinstance(value, str):
            return None
        parsed = self.parse(value)
        return parsed.text if parsed else None

    def identity(self, product_name: str | None) -> str | None:
        """The identity of a product name (see ProductName.identity); None for what is not a name."""
        parsed = self.parse(product_name) if product_name else None
        return parsed.identity if parsed else None

    def product_type_of_level(self, level: str) -> str | None:
        return self.product_types.get(level)

    def is_other_mission(self, platform_short_name: object, name: object) -> bool:
        """True when a CDSE product belongs to another mission: its `platformShortName` says so (SENTINEL-1), or,
        without one, its name starts with another mission's platform (S1A_…, S5P_…). Such a product is filtered,
        never given one of this mission's platforms."""
        if isinstance(platform_short_name, str) and platform_short_name.strip():
            return platform_short_name.strip().upper() != self.collection
        match = _MISSION_PREFIX.match(name) if isinstance(name, str) else None
        return match is not None and not match[1].startswith(self.platform_prefix)

    def platform_in_name(self, name: str) -> str | None:
        """The platform a name or item id starts with (`S2B_33UUP_20240901_0_L2A` -> `S2B`), of this mission."""
        match = _MISSION_PREFIX.match(name.upper())
        platform = match[1] if match else ""
        if len(platform) == len(self.platform_prefix) + 1 and platform.startswith(self.platform_prefix):
            return platform
        return None

    def stac_platform(self, value: str) -> str | None:
        """A STAC `platform` of this mission as CDSE names it (`sentinel-2a` -> `S2A`); None for another."""
        match = _STAC_SENTINEL.match(value.replace(" ", ""))
        if match is None or f"S{match[1]}" != self.platform_prefix:
            return None
        return self.platform(match[2].upper())

    def stac_product_type(self, collection: str) -> str | None:
        """The product type of a STAC collection's items (`sentinel-2-l2a` -> `S2MSI2A`); None when unknown."""
        return self.stac_collections.get(collection.lower())

    def product_name_of_item(self, item: Mapping[str, Any]) -> str | None:
        """A STAC item's product name: the first of `stac_name_keys` that holds one (Earth Search's and Planetary
        Computer's `s2:product_uri`, …), else its `id` when that is a product name (CDSE STAC)."""
        properties = item.get("properties")
        values = [properties.get(key) for key in self.stac_name_keys] if isinstance(properties, Mapping) else []
        return next(filter(None, map(self.product_name_of, [*values, item.get("id")])), None)


SENTINEL_2 = Mission(
    name="Sentinel-2",
    collection="SENTINEL-2",
    platform_prefix="S2",
    serials=("A", "B", "C"),
    # Platform S2A..S2D (S2D is built; names allow it before it can be configured), level, sensing start,
    # processing baseline, relative orbit, MGRS tile, discriminator (the product's generation time).
    name_pattern=re.compile(
        r"(S2[A-D])_MSI(L1C|L2A)_(\d{8}T\d{6})_(N\d{4})_(R\d{3})_T(\d{2}[A-Z]{3})_(\d{8}T\d{6})", re.ASCII
    ),
    product_types={"L1C": "S2MSI1C", "L2A": "S2MSI2A"},
    # Earth Search v1 and v0, Planetary Computer, CDSE.
    stac_collections={
        "sentinel-2-l1c": "S2MSI1C",
        "sentinel-2-l2a": "S2MSI2A",
        "sentinel-2-c1-l2a": "S2MSI2A",
        "sentinel-s2-l1c": "S2MSI1C",
        "sentinel-s2-l2a": "S2MSI2A",
        "sentinel-s2-l2a-cogs": "S2MSI2A",
    },
    # Earth Search v1 / Planetary Computer, Earth Search v0, GEODES.
    stac_name_keys=("s2:product_uri", "sentinel:product_id", "identifier"),
    default_product_type="S2MSI1C",
)

# The mission this deployment follows.
MISSION = SENTINEL_2
