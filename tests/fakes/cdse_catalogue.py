"""A fake CDSE OData catalogue (SPEC §2, §9): a real threaded HTTP server serving `/odata/v1/Products` (and one
product, `/odata/v1/Products(<Id>)`) and `/odata/v1/DeletedProducts` with the same rules, as strict
as CDSE: 422 for `$top` > 1000 or `$skip` > 10000, no order without `$orderby` (and none among products
sharing a PublicationDate), 400 for a `$filter` it does not understand. Faults can be injected: 429 with
Retry-After, 500, 503, a connection dropped mid-body, a reply held past the client's timeout; one at a time
(`inject`) or by a policy asked about every request (`fault_policy`).

The entities come from memory (`add`, `add_deleted`), or from a `CatalogueSource` that answers each search with
its candidates (`source`; the twin's simulated CDSE in twin/world.py): the catalogue still applies every rule.

    with FakeCatalogue() as catalogue:
        catalogue.add(day_products(dt.date(2024, 9, 12), "S2A", 1500))
        ... CDSE_CATALOGUE_URL=catalogue.url ...
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

from link_fetcher.cdse.products import load_allowed_tiles
from link_fetcher.settings import PACKAGED_TILES_FILE
from tests.factories import cdse_product
from tests.fakes.http_server import DropMidBody, FakeHttpServer, Reply, json_reply

PRODUCTS_PATH = "/odata/v1/Products"
DELETED_PATH = "/odata/v1/DeletedProducts"
_ONE_PRODUCT = re.compile(r"^/odata/v1/Products\((?P<id>[^)]*)\)$")
MAX_TOP, MAX_SKIP, DEFAULT_TOP = 1000, 10_000, 20

_ATTRIBUTE_CLAUSE = re.compile(
    r"^Attributes/OData\.CSC\.StringAttribute/any\(att:att/Name eq '(?P<name>\w+)' "
    r"and att/OData\.CSC\.StringAttribute/Value eq '(?P<value>[^']*)'\)$"
)
_COLLECTION_CLAUSE = re.compile(r"^Collection/Name eq '(?P<value>[^']*)'$")
_DATE_CLAUSE = re.compile(
    r"^(?P<field>PublicationDate|ContentDate/Start|DeletionDate) (?P<op>eq|ge|gt|le|lt) (?P<value>\S+)$"
)
_COMPARE: dict[str, Callable[[dt.datetime, dt.datetime], bool]] = {
    "eq": lambda a, b: a == b,
    "ge": lambda a, b: a >= b,
    "gt": lambda a, b: a > b,
    "le": lambda a, b: a <= b,
    "lt": lambda a, b: a < b,
}


class Entity(Protocol):
    """What a search reads of a product or a DeletedProducts entity."""

    @property
    def id(self) -> str: ...
    @property
    def collection(self) -> str: ...
    @property
    def attributes(self) -> dict[str, str]: ...
    @property
    def full_json(self) -> bytes: ...
    @property
    def bare_json(self) -> bytes: ...
    def value(self, field: str) -> dt.datetime: ...


@dataclasses.dataclass(frozen=True)
class SearchHint:
    """What a search's `$filter` narrows to, for a source to pick its candidates: the collection searched, the
    bounds on its order field (PublicationDate, or DeletionDate for DeletedProducts) and the attributes asked for."""

    deleted: bool
    start: dt.datetime | None = None  # inclusive
    end: dt.datetime | None = None  # exclusive
    attributes: dict[str, str] = dataclasses.field(default_factory=dict)


class CatalogueSource(Protocol):
    def candidates(self, hint: SearchHint) -> Iterable[Entity]:
        """Every entity that may match a search with this hint (more is allowed: the filter still applies)."""
        ...

    def product(self, product_id: str) -> Entity | None:
        """One product by Id, while it is visible."""
        ...


class BadRequest(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


@dataclasses.dataclass(frozen=True)
class _Product:
    id: str
    published: dt.datetime
    sensing: dt.datetime
    collection: str
    attributes: dict[str, str]
    full_json: bytes  # with Attributes ($expand=Attributes)
    bare_json: bytes

    @classmethod
    def of(cls, product: dict[str, Any]) -> _Product:
        bare = {key: value for key, value in product.items() if key != "Attributes"}
        return cls(
            id=product["Id"],
            published=_stored_time(product["PublicationDate"]),
            sensing=_stored_time(product["ContentDate"]["Start"]),
            collection="SENTINEL-2",
            attributes={a["Name"]: str(a["Value"]) for a in product.get("Attributes", [])},
            full_json=json.dumps(product).encode(),
            bare_json=json.dumps(bare).encode(),
        )

    def value(self, field: str) -> dt.datetime:
        if field == "DeletionDate":
            raise BadRequest(400, "Products have no DeletionDate")
        return self.published if field == "PublicationDate" else self.sensing


@dataclasses.dataclass(frozen=True)
class _Deleted:
    """A DeletedProducts entity: Id, Name, DeletionDate, DeletionCause (no attributes)."""

    id: str
    deleted: dt.datetime
    full_json: bytes
    collection: str = "SENTINEL-2"
    attributes: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def bare_json(self) -> bytes:
        return self.full_json

    @classmethod
    def of(cls, entity: dict[str, Any]) -> _Deleted:
        return cls(entity["Id"], _parse_time(entity["DeletionDate"]), json.dumps(entity).encode())

    def value(self, field: str) -> dt.datetime:
        if field != "DeletionDate":
            raise BadRequest(400, f"DeletedProducts: unsupported field {field}")
        return self.deleted


def _parse_time(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise BadRequest(400, f"time without zone: {value}")
    return parsed


def _stored_time(value: str) -> dt.datetime:
    """A product's own timestamp as the catalogue compares it: one without zone (malformed, but a product may
    hold one) counts as UTC."""
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _split_conjunction(expression: str) -> list[str]:
    """`a and b and any(x and y)` → [a, b, any(x and y)]: split on `and` outside parentheses."""
    clauses, depth, start, index = [], 0, 0, 0
    while index < len(expression):
        char = expression[index]
        depth += char == "("
        depth -= char == ")"
        if depth == 0 and expression.startswith(" and ", index):
            clauses.append(expression[start:index])
            index += len(" and ")
            start = index
            continue
        index += 1
    clauses.append(expression[start:])
    return [clause.strip() for clause in clauses]


def parse_filter(expression: str) -> Callable[[Any], bool]:
    """The predicate of a `$filter` in the subset CDSE queries of link-fetcher use; 400 for anything else."""
    tests: list[Callable[[Any], bool]] = []
    for clause in _split_conjunction(expression):
        if match := _COLLECTION_CLAUSE.match(clause):
            tests.append(lambda p, value=match["value"]: p.collection == value)
        elif match := _ATTRIBUTE_CLAUSE.match(clause):
            tests.append(lambda p, name=match["name"], value=match["value"]: p.attributes.get(name) == value)
        elif match := _DATE_CLAUSE.match(clause):
            compare, bound = _COMPARE[match["op"]], _parse_time(match["value"])
            tests.append(lambda p, field=match["field"], c=compare, b=bound: c(p.value(field), b))
        else:
            raise BadRequest(400, f"unsupported $filter clause: {clause}")
    return lambda product: all(test(product) for test in tests)


def search_hint(path: str, params: dict[str, str]) -> SearchHint:
    """The hint of a search request (see `SearchHint`); bounds are widened to whole instants, never narrowed."""
    deleted = path == DELETED_PATH
    order_field = "DeletionDate" if deleted else "PublicationDate"
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    attributes: dict[str, str] = {}
    for clause in _split_conjunction(params.get("$filter", "")) if params.get("$filter") else []:
        if match := _ATTRIBUTE_CLAUSE.match(clause):
            attributes[match["name"]] = match["value"]
        elif (match := _DATE_CLAUSE.match(clause)) and match["field"] == order_field:
            try:
                bound = _parse_time(match["value"])
            except (BadRequest, ValueError):
                continue
            if match["op"] in ("ge", "gt", "eq"):
                start = bound if start is None else max(start, bound)
            if match["op"] in ("lt", "le", "eq"):
                upper = bound + dt.timedelta(microseconds=1) if match["op"] != "lt" else bound
                end = upper if end is None else min(end, upper)
    return SearchHint(deleted, start, end, attributes)


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    try:
        return int(params.get(name, default))
    except ValueError:
        raise BadRequest(400, f"{name} must be an integer") from None


class FakeCatalogue(FakeHttpServer):
    """Products in memory and the rules CDSE applies to a search."""

    def __init__(
        self,
        source: CatalogueSource | None = None,
        *,
        fault_policy: Callable[[str, str], str | None] | None = None,
        timeout_seconds: float = 61.0,
        answer_seconds: float = 0.0,
    ) -> None:
        super().__init__()
        self._products: dict[str, _Product] = {}
        self._deleted: dict[str, _Deleted] = {}
        self.source = source
        self.faults: collections.deque[str] = collections.deque()
        # Asked (path, query) for each request when no injected fault is waiting: a fault or None.
        self.fault_policy = fault_policy
        # How long a `timeout` fault holds the reply: past the client's read timeout (link_fetcher.http).
        self.timeout_seconds = timeout_seconds
        # How long every answer takes, as the real catalogue's do: work timed against a deadline meets it whatever
        # the machine's speed.
        self.answer_seconds = answer_seconds

    def add(self, products: Iterable[dict[str, Any]]) -> None:
        """Make products visible (a product added after a fetch plays one that became visible late)."""
        parsed = [_Product.of(product) for product in products]
        with self.lock:
            self._products.update((product.id, product) for product in parsed)

    def add_deleted(self, entities: Iterable[dict[str, Any]]) -> None:
        """Make DeletedProducts entities visible (see `deleted_entity`)."""
        parsed = [_Deleted.of(entity) for entity in entities]
        with self.lock:
            self._deleted.update((entity.id, entity) for entity in parsed)

    def remove(self, ids: Iterable[str]) -> None:
        with self.lock:
            for product_id in ids:
                self._products.pop(product_id, None)

    def inject(self, *faults: str) -> None:
        """Faults for the next requests, one each: `429`, `500`, `503`, `drop` (connection closed mid-body) or
        `timeout` (the reply held for `timeout_seconds`, then a 504)."""
        with self.lock:
            self.faults.extend(faults)

    def requests_for(self, platform: str) -> int:
        """Requests received (faulted ones included) whose filter names this platform (`S2A`)."""
        marker = f"'platformSerialIdentifier' and att/OData.CSC.StringAttribute/Value eq '{platform[-1]}'"
        with self.lock:
            queries = [parse_qs(urlsplit(path).query).get("$filter", [""])[-1] for _, path in self.requests]
        return sum(marker in query for query in queries)

    def handle(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> Reply:
        time.sleep(self.answer_seconds)
        with self.lock:
            fault = self.faults.popleft() if self.faults else None
        if fault is None and self.fault_policy is not None:
            fault = self.fault_policy(path, query)
        one = _ONE_PRODUCT.match(path)
        if (path not in (PRODUCTS_PATH, DELETED_PATH) and not one) or method != "GET":
            return json_reply(404, {"detail": "not found"})
        if fault == "429":
            return json_reply(429, {"detail": "Too Many Requests"}, {"Retry-After": "1"})
        if fault in ("500", "503"):
            return json_reply(
                int(fault), {"detail": "Internal Server Error" if fault == "500" else "Service Unavailable"}
            )
        if fault == "timeout":
            time.sleep(self.timeout_seconds)
            return json_reply(504, {"detail": "Gateway Timeout"})
        if fault == "not-a-page":  # 200, but not a search answer at all
            return json_reply(200, {"detail": "maintenance"})
        params = {key: values[-1] for key, values in parse_qs(query).items()}
        if one:
            with self.lock:
                found: Entity | None = self._products.get(one["id"])
            if found is None and self.source is not None:
                found = self.source.product(one["id"])
            if found is None:
                return json_reply(404, {"detail": f"Product {one['id']} not found"})
            return 200, {"Content-Type": "application/json"}, found.full_json
        try:
            reply = (
                200,
                {"Content-Type": "application/json"},
                self.search(params, headers.get("host", "localhost"), path),
            )
        except BadRequest as exc:
            return json_reply(exc.status, {"detail": str(exc)})
        if fault == "drop":
            raise DropMidBody(reply)
        return reply

    def search(self, params: dict[str, str], host: str, path: str = PRODUCTS_PATH) -> bytes:
        top = _int_param(params, "$top", DEFAULT_TOP)
        skip = _int_param(params, "$skip", 0)
        if not 0 <= top <= MAX_TOP:
            raise BadRequest(422, f"$top must be 0..{MAX_TOP}")
        if not 0 <= skip <= MAX_SKIP:
            raise BadRequest(422, f"$skip must be 0..{MAX_SKIP}")
        matches = parse_filter(params["$filter"]) if "$filter" in params else lambda product: True
        deleted = path == DELETED_PATH
        order_field = "DeletionDate" if deleted else "PublicationDate"
        with self.lock:
            entities: list[Entity] = list((self._deleted if deleted else self._products).values())
        if self.source is not None:
            entities.extend(self.source.candidates(search_hint(path, params)))
        selected = [entity for entity in entities if matches(entity)]
        order = params.get("$orderby")
        if order is None:
            random.shuffle(selected)  # CDSE: undefined order
        elif order in (f"{order_field} asc", f"{order_field} desc"):
            # Entities sharing the instant come in any order.
            keyed = sorted(((p.value(order_field), random.random()), p) for p in selected)
            selected = [p for _, p in (reversed(keyed) if order.endswith("desc") else keyed)]
        else:
            raise BadRequest(400, f"unsupported $orderby: {order}")
        page = selected[skip : skip + top]
        expand = params.get("$expand") == "Attributes"
        parts = [b'{"@odata.context":"$metadata#%s"' % (b"DeletedProducts" if deleted else b"Products")]
        if params.get("$count", "").lower() == "true":
            parts.append(b',"@odata.count":%d' % len(selected))
        parts.append(b',"value":[' + b",".join(p.full_json if expand else p.bare_json for p in page) + b"]")
        if skip + top < len(selected) and skip + top <= MAX_SKIP:
            next_link = f"http://{host}{path}?{urlencode({**params, '$skip': str(skip + top)})}"
            parts.append(b',"@odata.nextLink":' + json.dumps(next_link).encode())
        return b"".join(parts) + b"}"


def deleted_entity(product: dict[str, Any], deleted: dt.datetime, cause: str = "Corrupted product") -> dict[str, Any]:
    """The DeletedProducts entity CDSE serves once `product` is withdrawn (fields as in the notification value of
    tests/fixtures/push-granule-deleted.json)."""
    return {
        "@odata.mediaContentType": "application/octet-stream",
        "Id": product["Id"],
        "Name": product["Name"],
        "OriginDate": product.get("OriginDate"),
        "DeletionDate": deleted.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "DeletionCause": cause,
    }


def tiles(allowed: bool, count: int) -> list[str]:
    """`count` MGRS tile ids that are (or are not) in the packaged HLS allow-list."""
    allowed_tiles = load_allowed_tiles(PACKAGED_TILES_FILE)
    if allowed:
        return sorted(allowed_tiles)[:count]
    candidates = (f"{zone:02d}{a}{b}{c}" for zone in range(1, 61) for a in "XYZ" for b in "XYZ" for c in "XYZ")
    return [tile for tile in candidates if tile not in allowed_tiles][:count]


def day_products(
    day: dt.date,
    platform: str,
    count: int,
    *,
    allowed_share: float = 0.6,
    published: Sequence[dt.datetime] | None = None,
) -> list[dict[str, Any]]:
    """`count` products published across `day` (or at the given instants), `allowed_share` of them on
    allowed tiles, sensed a few hours before publication."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    if published is None:
        step = dt.timedelta(days=1) / count
        published = [start + index * step for index in range(count)]
    allowed, other = tiles(True, 50), tiles(False, 50)
    products = []
    for index, when in enumerate(published):
        when = when.replace(microsecond=when.microsecond // 1000 * 1000)  # CDSE gives milliseconds
        # Spread the allowed ones evenly: product i is allowed when the running share steps up at i.
        on_allowed = int((index + 1) * allowed_share) > int(index * allowed_share)
        tile = allowed[index % len(allowed)] if on_allowed else other[index % len(other)]
        products.append(
            cdse_product(platform=platform, tile=tile, published=when, sensing=when - dt.timedelta(hours=3))
        )
    return products
