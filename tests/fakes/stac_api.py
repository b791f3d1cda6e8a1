"""A fake STAC API (a real HTTP server): landing page, conformance, collections, items and item search by GET
and POST with `next` links, strict on bad parameters like real servers (400 with a JSON `code`/`description`).

Default page size 10. Faults: `fail_next(status, count, after=n)` lets n searches through, then answers the
next `count` with `status`, or with DROP cuts the answer off mid-body (a chunked reply and a closed connection).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

from tests.fakes.http_server import FakeHttpServer, Reply, json_reply

STAC_VERSION = "1.0.0"
CONFORMANCE = {
    "core": "https://api.stacspec.org/v1.0.0/core",
    "collections": "https://api.stacspec.org/v1.0.0/collections",
    "features": "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "item-search": "https://api.stacspec.org/v1.0.0/item-search",
    "query": "https://api.stacspec.org/v1.0.0/item-search#query",
}
SEARCH_PARAMETERS = {"collections", "bbox", "intersects", "datetime", "limit", "query", "token", "ids"}
QUERY_OPERATORS = {
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "eq": lambda a, b: a == b,
}
DROP = 0  # fail_next(DROP): the connection drops halfway through the search result
BANDS = ("coastal", "blue", "green", "red", "rededge1", "nir", "swir16", "swir22", "scl", "thumbnail")


class BadRequest(Exception):
    pass


def stac_item(
    collection: str,
    *,
    sensed: dt.datetime,
    tile: str = "33UUP",
    platform: str = "sentinel-2b",
    cloud: float = 10.0,
    bbox: tuple[float, float, float, float] = (10.2, 45.2, 10.8, 45.8),
    sequence: int = 0,
) -> dict[str, Any]:
    """An item shaped like Earth Search's sentinel-2-l2a items (links are added when served)."""
    item_id = f"S2{platform[-1].upper()}_{tile}_{sensed:%Y%m%d}_{sequence}_L2A"
    minx, miny, maxx, maxy = bbox
    base = f"https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/{tile[:2]}/{tile[2]}/{tile[3:]}"
    folder = f"{base}/{sensed.year}/{sensed.month}/{item_id}"
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": item_id,
        "collection": collection,
        "bbox": list(bbox),
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny]]],
        },
        "properties": {
            "datetime": sensed.isoformat().replace("+00:00", "Z"),
            "created": (sensed + dt.timedelta(hours=3)).isoformat().replace("+00:00", "Z"),
            "platform": platform,
            "constellation": "sentinel-2",
            "eo:cloud_cover": cloud,
            "grid:code": f"MGRS-{tile}",
            "s2:product_type": "S2MSI2A",
        },
        "assets": {
            band: {"href": f"{folder}/{band}.tif", "type": "image/tiff; application=geotiff", "roles": ["data"]}
            for band in BANDS
        },
        "links": [],
    }


def _instant(text: str) -> dt.datetime:
    """RFC 3339 with a zone, as STAC requires; anything else is a bad request."""
    if "T" not in text or not (text.endswith("Z") or "+" in text[10:] or "-" in text[10:]):
        raise BadRequest(f"invalid datetime {text!r}: RFC 3339 with a time zone is required")
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"invalid datetime {text!r}") from None


def _interval(text: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    parts = text.split("/")
    if len(parts) == 1:
        instant = _instant(parts[0])
        return instant, instant
    if len(parts) != 2 or parts == ["..", ".."]:
        raise BadRequest(f"invalid datetime interval {text!r}")
    start = None if parts[0] in ("", "..") else _instant(parts[0])
    end = None if parts[1] in ("", "..") else _instant(parts[1])
    if start and end and end < start:
        raise BadRequest(f"invalid datetime interval {text!r}: end before start")
    return start, end


def _bbox(value: Any) -> tuple[float, float, float, float]:
    parts = value.split(",") if isinstance(value, str) else value
    try:
        numbers = [float(part) for part in parts]
    except (TypeError, ValueError):
        raise BadRequest(f"invalid bbox {value!r}") from None
    if len(numbers) != 4:
        raise BadRequest(f"invalid bbox {value!r}: 4 numbers expected")
    minx, miny, maxx, maxy = numbers
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise BadRequest(f"invalid bbox {value!r}")
    return minx, miny, maxx, maxy


def _positions(coordinates: Any) -> list[list[float]]:
    if isinstance(coordinates, list) and coordinates and isinstance(coordinates[0], int | float):
        return [coordinates]
    if not isinstance(coordinates, list) or not coordinates:
        raise BadRequest("invalid intersects geometry: bad coordinates")
    return [position for part in coordinates for position in _positions(part)]


def _geometry_bbox(geometry: Any) -> tuple[float, float, float, float]:
    if not isinstance(geometry, dict) or "type" not in geometry:
        raise BadRequest("invalid intersects: a GeoJSON geometry is required")
    if geometry["type"] == "GeometryCollection":
        boxes = [_geometry_bbox(member) for member in geometry.get("geometries") or []]
        if not boxes:
            raise BadRequest("invalid intersects: empty GeometryCollection")
        return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)
    positions = _positions(geometry.get("coordinates"))
    xs, ys = [p[0] for p in positions], [p[1] for p in positions]
    return min(xs), min(ys), max(xs), max(ys)


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


class FakeStacApi(FakeHttpServer):
    def __init__(
        self,
        items: list[dict[str, Any]],
        *,
        collections: tuple[str, ...] = ("sentinel-2-l2a",),
        search_methods: tuple[str, ...] = ("GET", "POST"),
        query_extension: bool = True,
        item_assets: bool = False,
        default_limit: int = 10,
    ) -> None:
        super().__init__()
        self.collection_ids = collections
        self.search_methods = search_methods
        self.query_extension = query_extension
        self.item_assets = item_assets
        self.default_limit = default_limit
        self.searches: list[tuple[str, dict[str, Any]]] = []  # (method, parameters) of each search request
        self._faults: list[int | None] = []  # per coming search: a status to fail with, None to answer
        self.set_items(items)

    def set_items(self, items: list[dict[str, Any]]) -> None:
        """The catalogue, in the order searches return it (datetime, then id)."""
        with self.lock:
            self.items = sorted(items, key=lambda item: (item["properties"]["datetime"], item["id"]))

    def fail_next(self, status: int, count: int = 1, *, after: int = 0) -> None:
        with self.lock:
            self._faults.extend([None] * after + [status] * count)

    # --- documents ------------------------------------------------------------------------------------

    def _landing(self) -> dict[str, Any]:
        conforms = [uri for name, uri in CONFORMANCE.items() if name != "query" or self.query_extension]
        links = [
            {"rel": "self", "href": f"{self.url}/", "type": "application/json"},
            {"rel": "root", "href": f"{self.url}/", "type": "application/json"},
            {"rel": "conformance", "href": f"{self.url}/conformance", "type": "application/json"},
            {"rel": "data", "href": f"{self.url}/collections", "type": "application/json"},
        ]
        links += [
            {"rel": "search", "href": f"{self.url}/search", "type": "application/geo+json", "method": method}
            for method in self.search_methods
        ]
        return {
            "type": "Catalog",
            "stac_version": STAC_VERSION,
            "id": "fake-stac",
            "description": "fake STAC API for tests",
            "conformsTo": conforms,
            "links": links,
        }

    def _collection(self, collection_id: str) -> dict[str, Any]:
        collection = {
            "type": "Collection",
            "stac_version": STAC_VERSION,
            "id": collection_id,
            "description": f"fake {collection_id}",
            "license": "proprietary",
            "extent": {
                "spatial": {"bbox": [[-180, -90, 180, 90]]},
                "temporal": {"interval": [["2015-06-27T10:25:31Z", None]]},
            },
            "links": [
                {"rel": "self", "href": f"{self.url}/collections/{collection_id}", "type": "application/json"},
                {"rel": "root", "href": f"{self.url}/", "type": "application/json"},
                {
                    "rel": "items",
                    "href": f"{self.url}/collections/{collection_id}/items",
                    "type": "application/geo+json",
                },
            ],
        }
        if self.item_assets:
            collection["item_assets"] = {band: {"type": "image/tiff", "roles": ["data"]} for band in BANDS}
        return collection

    def _served(self, item: dict[str, Any]) -> dict[str, Any]:
        served = copy.deepcopy(item)
        collection_url = f"{self.url}/collections/{item['collection']}"
        served["links"] = [
            {"rel": "self", "href": f"{collection_url}/items/{item['id']}", "type": "application/geo+json"},
            {"rel": "parent", "href": collection_url, "type": "application/json"},
            {"rel": "collection", "href": collection_url, "type": "application/json"},
            {"rel": "root", "href": f"{self.url}/", "type": "application/json"},
        ]
        return served

    # --- search ---------------------------------------------------------------------------------------

    def _parameters(self, method: str, query: str, body: bytes) -> dict[str, Any]:
        if method == "GET":
            parameters: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
            for name in ("intersects", "query"):
                if name in parameters:
                    try:
                        parameters[name] = json.loads(parameters[name])
                    except json.JSONDecodeError:
                        raise BadRequest(f"invalid {name}: not JSON") from None
            if "collections" in parameters:
                parameters["collections"] = [c for c in parameters["collections"].split(",") if c]
            return parameters
        try:
            parameters = json.loads(body or b"{}")
        except json.JSONDecodeError:
            raise BadRequest("request body is not JSON") from None
        if not isinstance(parameters, dict):
            raise BadRequest("request body must be a JSON object")
        return parameters

    def _matcher(self, parameters: dict[str, Any]):
        allowed = SEARCH_PARAMETERS if self.query_extension else SEARCH_PARAMETERS - {"query"}
        if unknown := set(parameters) - allowed:
            raise BadRequest(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        collections = parameters.get("collections")
        if collections is not None:
            if not isinstance(collections, list) or not all(isinstance(c, str) for c in collections):
                raise BadRequest("invalid collections")
            if missing := [c for c in collections if c not in self.collection_ids]:
                raise BadRequest(f"unknown collection(s): {', '.join(missing)}")
        if "bbox" in parameters and "intersects" in parameters:
            raise BadRequest("only one of bbox and intersects is allowed")
        area = _bbox(parameters["bbox"]) if "bbox" in parameters else None
        if "intersects" in parameters:
            area = _geometry_bbox(parameters["intersects"])
        start, end = _interval(parameters["datetime"]) if "datetime" in parameters else (None, None)
        conditions = []
        for prop, comparisons in (parameters.get("query") or {}).items():
            if not isinstance(comparisons, dict):
                raise BadRequest(f"invalid query for {prop}")
            for operator, value in comparisons.items():
                if operator not in QUERY_OPERATORS:
                    raise BadRequest(f"unsupported query operator {operator}")
                conditions.append((prop, QUERY_OPERATORS[operator], value))

        def matches(item: dict[str, Any]) -> bool:
            if collections is not None and item["collection"] not in collections:
                return False
            if area is not None and not _overlaps(tuple(item["bbox"]), area):
                return False
            sensed = dt.datetime.fromisoformat(item["properties"]["datetime"])
            if (start and sensed < start) or (end and sensed > end):
                return False
            for prop, compare, value in conditions:
                if prop not in item["properties"] or not compare(item["properties"][prop], value):
                    return False
            return True

        return matches

    def _search(self, method: str, query: str, body: bytes) -> Reply:
        if method not in self.search_methods:
            return json_reply(405, {"code": "MethodNotAllowed", "description": f"{method} search is not offered"})
        parameters = self._parameters(method, query, body)
        with self.lock:
            self.searches.append((method, copy.deepcopy(parameters)))
        try:
            limit = int(parameters.get("limit", self.default_limit))
        except (TypeError, ValueError):
            raise BadRequest("invalid limit") from None
        if not 1 <= limit <= 10000:
            raise BadRequest(f"invalid limit {limit}: 1..10000")
        token = str(parameters.get("token", "offset:0"))
        if not token.startswith("offset:") or not token[7:].isdigit():
            raise BadRequest(f"invalid token {token!r}")
        offset = int(token[7:])
        matches = self._matcher(parameters)
        with self.lock:
            found = [item for item in self.items if matches(item)]
        page = found[offset : offset + limit]
        links = [{"rel": "root", "href": f"{self.url}/", "type": "application/json"}]
        if offset + limit < len(found):
            following = {**parameters, "token": f"offset:{offset + limit}"}
            if method == "GET":
                get_parameters = {key: _query_text(value) for key, value in following.items()}
                links.append({"rel": "next", "href": f"{self.url}/search?{urlencode(get_parameters)}", "method": "GET"})
            else:
                links.append({"rel": "next", "href": f"{self.url}/search", "method": "POST", "body": following})
        return json_reply(
            200,
            {
                "type": "FeatureCollection",
                "features": [self._served(item) for item in page],
                "links": links,
                "numberMatched": len(found),
                "numberReturned": len(page),
            },
            {"Content-Type": "application/geo+json"},
        )

    def handle(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> Reply:
        path = path.rstrip("/") or "/"
        if path == "/search":
            with self.lock:
                fault = self._faults.pop(0) if self._faults else None
            if fault == DROP:
                status, headers, payload = self._search(method, query, body)
                cut = f"{len(payload):x}\r\n".encode() + payload[: len(payload) // 2]
                return status, {**headers, "Transfer-Encoding": "chunked", "Connection": "close"}, cut
            if fault is not None:
                retry_after = {"Retry-After": "0"} if fault == 429 else {}
                return json_reply(fault, {"code": "Fault", "description": f"injected {fault}"}, retry_after)
            try:
                return self._search(method, query, body)
            except BadRequest as exc:
                return json_reply(400, {"code": "BadRequest", "description": str(exc)})
        if method != "GET":
            return json_reply(405, {"code": "MethodNotAllowed", "description": method})
        if path == "/":
            return json_reply(200, self._landing())
        if path == "/conformance":
            return json_reply(200, {"conformsTo": self._landing()["conformsTo"]})
        if path == "/collections":
            collections = [self._collection(c) for c in self.collection_ids]
            return json_reply(200, {"collections": collections, "links": []})
        parts = path.strip("/").split("/")
        if parts[0] == "collections" and len(parts) == 2 and parts[1] in self.collection_ids:
            return json_reply(200, self._collection(parts[1]))
        if parts[0] == "collections" and len(parts) == 4 and parts[2] == "items":
            for item in self.items:
                if item["collection"] == parts[1] and item["id"] == parts[3]:
                    return json_reply(200, self._served(item), {"Content-Type": "application/geo+json"})
        return json_reply(404, {"code": "NotFound", "description": f"{path} not found"})


def _query_text(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
