"""Adapter over pystac-client: open a STAC API, check collections, and page through one search window.

Requests go through `link_fetcher.http.make_session`, so they time out and retry 429/5xx/dropped connections
like the CDSE client; a response body cut off mid-read is retried here (`with_retries`).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import requests
from pystac import STACError
from pystac_client import Client, ConformanceClasses
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from pystac_client.warnings import PystacClientWarning

from link_fetcher.http import DEFAULT_TIMEOUT, HttpError, make_session, with_retries
from link_fetcher.stac.area import Area
from link_fetcher.stac.timerange import TimeRange
from link_fetcher.text import one_line

log = logging.getLogger(__name__)


class StacApiError(RuntimeError):
    """The API failed or answered something unusable; the message is one line."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class StacUnreachable(StacApiError):
    """The API could not be opened at all (down, wrong URL, not a STAC API)."""


class UnknownCollection(ValueError):
    pass


class _RetryingStacApiIO(StacApiIO):
    """StacApiIO on our retrying session. pystac-client wraps every failure in APIError; a body cut off
    mid-read (the one failure urllib3 does not retry) is taken back out of it and retried."""

    def __init__(self, session: requests.Session, *, timeout: tuple[float, float], attempts: int, backoff: float):
        super().__init__(timeout=timeout, max_retries=None)
        session.headers.update(self.session.headers)
        self.session = session
        self._attempts = attempts
        self._backoff = backoff

    def request(
        self,
        href: str,
        method: str | None = None,
        headers: dict[str, str] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> str:
        def call() -> str:
            try:
                return super(_RetryingStacApiIO, self).request(href, method, headers, parameters)
            except APIError as exc:
                if isinstance(exc.__context__, requests.exceptions.ChunkedEncodingError):
                    raise exc.__context__ from exc
                raise

        return with_retries(call, what=f"{method or 'GET'} {href}", attempts=self._attempts, backoff=self._backoff)


def _api_error(exc: Exception, what: str) -> StacApiError:
    status = getattr(exc, "status_code", None)
    if status:
        return StacApiError(f"{what}: HTTP {status} {one_line(str(exc))}".rstrip(), status)
    return StacApiError(f"{what}: {one_line(exc)}")


@dataclasses.dataclass(frozen=True, slots=True)
class SearchRequest:
    collection: str
    area: Area
    window: TimeRange
    max_cloud: float | None = None
    page_size: int = 100


class StacApi:
    """One opened STAC API."""

    def __init__(self, url: str, client: Client) -> None:
        self.url = url
        self._client = client
        methods = {
            (link.extra_fields.get("method") or "GET").upper()
            for link in client.links
            if link.rel == "search" and link.media_type in (None, "application/geo+json", "application/json")
        }
        # POST carries a GeoJSON AOI in the body rather than the URL; use it when offered.
        self.search_method = "POST" if "POST" in methods or not methods else "GET"
        self.supports_query = client.conforms_to(ConformanceClasses.QUERY)

    @classmethod
    def open(
        cls, url: str, *, attempts: int = 6, backoff: float = 0.5, timeout: tuple[float, float] = DEFAULT_TIMEOUT
    ) -> StacApi:
        session = make_session(attempts=attempts, backoff=backoff, timeout=timeout, methods=("GET", "HEAD", "POST"))
        stac_io = _RetryingStacApiIO(session, timeout=timeout, attempts=attempts, backoff=backoff)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PystacClientWarning)
                client = Client.open(url, stac_io=stac_io)
        except (APIError, HttpError) as exc:
            raise StacUnreachable(str(_api_error(exc, f"cannot open STAC API {url}"))) from exc
        except (STACError, ValueError, KeyError, TypeError) as exc:
            raise StacUnreachable(f"{url} is not a STAC API: {one_line(exc)}") from exc
        if not client.conforms_to(ConformanceClasses.ITEM_SEARCH):
            raise StacUnreachable(f"{url} does not offer STAC item search (conformance class item-search)")
        return cls(url, client)

    def collection(self, collection_id: str) -> dict[str, Any]:
        """The collection's JSON; UnknownCollection naming the ones the API has when it does not exist."""
        try:
            found = self._client.get_collection(collection_id)
        except (APIError, HttpError) as exc:
            raise _api_error(exc, f"collection {collection_id}") from exc
        if found is None:
            raise UnknownCollection(f"unknown collection {collection_id!r} on {self.url}{self._known_collections()}")
        return found.to_dict(include_self_link=False, transform_hrefs=False)

    def _known_collections(self) -> str:
        try:
            names = sorted(collection.id for collection in self._client.get_collections())
        except (APIError, HttpError, STACError):
            return ""
        shown = ", ".join(names[:30]) + (", …" if len(names) > 30 else "")
        return f" (it has: {shown})" if names else ""

    def pages(self, request: SearchRequest) -> Iterator[list[dict[str, Any]]]:
        """The items of one window, a page at a time, following every `next` link."""
        query = None
        if request.max_cloud is not None and self.supports_query:
            query = {"eo:cloud_cover": {"lte": request.max_cloud}}
        search = self._client.search(
            method=self.search_method,
            collections=[request.collection],
            datetime=request.window.as_stac(),
            limit=request.page_size,
            query=query,
            **request.area.search_parameters(),
        )
        try:
            for page in search.pages_as_dicts():
                yield page.get("features") or []
        except (APIError, HttpError) as exc:
            raise _api_error(exc, f"search {request.collection} {request.window}") from exc
