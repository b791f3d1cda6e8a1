"""CDSE OData catalogue (SPEC §2): search pages, and one product by Id; small adapters over the retrying session
of `link_fetcher.http`."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
import requests

from link_fetcher.cdse.products import CdseProduct, ListedProduct, MalformedProduct, decode_listed_product
from link_fetcher.http import HttpError, get_json, make_session, raise_for_status, with_retries

PRODUCTS_PATH = "/odata/v1/Products"


class _Page(msgspec.Struct):
    """One answer of `GET /odata/v1/Products` (other members ignored)."""

    count: int = msgspec.field(name="@odata.count")  # every request asks for it ($count=True)
    products: list[ListedProduct] = msgspec.field(name="value")


class _PageEnvelope(msgspec.Struct):
    """The same answer with its products left undecoded, to read them one by one."""

    count: int = msgspec.field(name="@odata.count")
    products: list[msgspec.Raw] = msgspec.field(name="value")


class SearchPage(msgspec.Struct):
    """A page, in the server's order: each product read, or why it could not be (one bad product never costs
    its page)."""

    count: int
    products: list[ListedProduct | MalformedProduct]


_decode_page = msgspec.json.Decoder(_Page).decode
_decode_envelope = msgspec.json.Decoder(_PageEnvelope).decode


def decode_page(content: bytes) -> SearchPage:
    """msgspec.DecodeError when the answer is not a page at all. The page is decoded whole, in one pass; only a
    page holding a malformed product is decoded again product by product, to reject that one alone."""
    try:
        page = _decode_page(content)
    except msgspec.ValidationError:
        envelope = _decode_envelope(content)
        return SearchPage(envelope.count, [decode_listed_product(raw) for raw in envelope.products])
    return SearchPage(page.count, list(page.products))


class CdseCatalogue:
    """Search requests against one catalogue; keep one per process (its session keeps connections open)."""

    def __init__(self, base_url: str, session: requests.Session | None = None) -> None:
        self.url = base_url.rstrip("/") + PRODUCTS_PATH
        self.session = session or make_session()

    def search(self, params: Mapping[str, str]) -> SearchPage:
        """One page; HttpError (one line) once retries are used up or the server refuses the query."""

        def call() -> SearchPage:
            response = self.session.get(self.url, params=params)
            raise_for_status(response, "CDSE search")
            try:
                return decode_page(response.content)
            except msgspec.DecodeError as exc:  # also a ValidationError: the message names the member
                raise HttpError(f"CDSE search: unexpected answer: {exc}") from exc

        return with_retries(call, what="CDSE search")


class ProductLookup:
    """`GET {catalogue}/odata/v1/Products({Id})` (anonymous): a product whose notification lost its value."""

    def __init__(self, catalogue_url: str, session: requests.Session | None = None) -> None:
        self._url = catalogue_url.rstrip("/") + PRODUCTS_PATH
        self._session = session or make_session()

    def product(self, product_id: str) -> CdseProduct | None:
        """The product, or None when CDSE no longer has it (404)."""
        try:
            answer = get_json(
                self._session,
                f"{self._url}({product_id})",
                params={"$expand": "Attributes"},
                what=f"CDSE product {product_id}",
            )
        except HttpError as exc:
            if exc.status == 404:
                return None
            raise
        return CdseProduct.model_validate(answer)
