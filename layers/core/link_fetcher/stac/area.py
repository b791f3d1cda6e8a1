"""The area of interest of a STAC search: a bbox or a GeoJSON geometry, checked before anything is asked. Pure
apart from `load_geojson` reading its file."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")


class AreaError(ValueError):
    """A bbox or GeoJSON that cannot be searched with; the message names the problem, in one line."""


@dataclasses.dataclass(frozen=True, slots=True)
class Area:
    """Exactly one of bbox (minx, miny, maxx, maxy) and intersects (a GeoJSON geometry)."""

    bbox: tuple[float, float, float, float] | None = None
    intersects: dict[str, Any] | None = None

    def search_parameters(self) -> dict[str, Any]:
        return {"bbox": list(self.bbox)} if self.bbox else {"intersects": self.intersects}

    def __str__(self) -> str:
        if self.bbox:
            return "bbox " + ",".join(f"{value:g}" for value in self.bbox)
        return f"{self.intersects['type']} geometry" if self.intersects else "nowhere"


def _check_lon_lat(lon: float, lat: float, where: str) -> None:
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise AreaError(f"{where}: coordinates must be finite numbers")
    if not -180 <= lon <= 180:
        raise AreaError(f"{where}: longitude {lon:g} is outside -180..180")
    if not -90 <= lat <= 90:
        raise AreaError(f"{where}: latitude {lat:g} is outside -90..90")


def parse_bbox(value: str | Sequence[float]) -> Area:
    """`minx,miny,maxx,maxy` in degrees (WGS84). minx > maxx is a box crossing the antimeridian."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        numbers = tuple(float(part) for part in parts)
    except (TypeError, ValueError):
        raise AreaError(f"bad bbox {value!r}: expected four numbers minx,miny,maxx,maxy") from None
    if len(numbers) != 4:
        raise AreaError(f"bad bbox {value!r}: expected four numbers minx,miny,maxx,maxy, got {len(numbers)}")
    minx, miny, maxx, maxy = numbers
    _check_lon_lat(minx, miny, "bbox")
    _check_lon_lat(maxx, maxy, "bbox")
    if miny > maxy:
        raise AreaError(f"bad bbox {value!r}: miny {miny:g} is above maxy {maxy:g}")
    return Area(bbox=(minx, miny, maxx, maxy))


def _check_position(position: Any, where: str) -> None:
    if not isinstance(position, list) or len(position) not in (2, 3):
        raise AreaError(f"{where}: a position must be [lon, lat] or [lon, lat, height]")
    if not all(isinstance(number, int | float) and not isinstance(number, bool) for number in position):
        raise AreaError(f"{where}: a position must hold numbers")
    _check_lon_lat(float(position[0]), float(position[1]), where)


def _check_positions(positions: Any, depth: int, where: str) -> None:
    """`depth` 0 is one position, 1 a list of positions, and so on."""
    if depth == 0:
        _check_position(positions, where)
        return
    if not isinstance(positions, list) or not positions:
        raise AreaError(f"{where}: empty or malformed coordinates")
    for part in positions:
        _check_positions(part, depth - 1, where)


def _check_ring(ring: list[Any], where: str) -> None:
    if len(ring) < 4:
        raise AreaError(f"{where}: a polygon ring needs at least 4 positions")
    if ring[0] != ring[-1]:
        raise AreaError(f"{where}: a polygon ring must end where it starts")


def check_geometry(geometry: Any, where: str = "GeoJSON") -> dict[str, Any]:
    """A GeoJSON geometry (RFC 7946) with sound coordinates, else AreaError."""
    if not isinstance(geometry, dict) or geometry.get("type") not in (*_GEOMETRY_TYPES, "GeometryCollection"):
        kind = geometry.get("type") if isinstance(geometry, dict) else type(geometry).__name__
        raise AreaError(f"{where}: expected a GeoJSON geometry, Feature or FeatureCollection, got {kind!r}")
    kind = geometry["type"]
    if kind == "GeometryCollection":
        members = geometry.get("geometries")
        if not isinstance(members, list) or not members:
            raise AreaError(f"{where}: GeometryCollection without geometries")
        for member in members:
            check_geometry(member, where)
        return geometry
    depth = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2, "MultiPolygon": 3}
    coordinates = geometry.get("coordinates")
    _check_positions(coordinates, depth[kind], f"{where} {kind}")
    polygons: list[Any] = (
        [coordinates] if kind == "Polygon" else list(coordinates or []) if kind == "MultiPolygon" else []
    )
    for polygon in polygons:
        for ring in polygon:
            _check_ring(ring, f"{where} {kind}")
    return geometry


def geometry_of(document: Any, where: str = "GeoJSON") -> dict[str, Any]:
    """The one geometry to search with: a geometry as is, a Feature's geometry, a FeatureCollection's
    geometries (one, or a GeometryCollection of them)."""
    if isinstance(document, dict) and document.get("type") == "Feature":
        return check_geometry(document.get("geometry"), f"{where} Feature")
    if isinstance(document, dict) and document.get("type") == "FeatureCollection":
        features = document.get("features")
        if not isinstance(features, list) or not features:
            raise AreaError(f"{where}: FeatureCollection without features")
        geometries = [geometry_of(feature, where) for feature in features]
        return geometries[0] if len(geometries) == 1 else {"type": "GeometryCollection", "geometries": geometries}
    return check_geometry(document, where)


def load_geojson(path: Path) -> Area:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AreaError(f"cannot read GeoJSON {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AreaError(f"{path} is not JSON: {exc}") from None
    return Area(intersects=geometry_of(document, str(path)))
