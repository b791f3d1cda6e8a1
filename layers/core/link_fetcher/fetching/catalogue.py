"""CDSE OData catalogue search (SPEC §2): a small adapter over the retrying session of `link_fetcher.http`."""

from __future__ import annotations

from collections.abc import Mapping

import requests
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from link_fetcher.http import HttpError, make_session, raise_for_status, with_retries
from link_fetcher.products import CdseProduct

PRODUCTS_PATH = "/odata/v1/Products"


class SearchPage(BaseModel):
    """One answer of `GET /odata/v1/Products`."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    count: int = Field(alias="@odata.count")  # every request asks for it ($count=True)
    products: list[CdseProduct] = Field(alias="value")


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
                return SearchPage.model_validate_json(response.content)
            except ValidationError as exc:
                raise HttpError(f"CDSE search: unexpected answer: {exc.errors()[0]['msg']}") from exc

        return with_retries(call, what="CDSE search")
