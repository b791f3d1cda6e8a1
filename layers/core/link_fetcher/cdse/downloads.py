"""CDSE product downloads (SPEC §2): the download URL of a product, and the opener of its bytes with a bearer
token, sent only to the configured download host."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests

from link_fetcher.http import HttpError, check_url, raise_for_status

if TYPE_CHECKING:
    from link_fetcher.cdse.identity import TokenProvider

OpenResponse = Callable[[], requests.Response]


def download_url(download_base_url: str, product_id: str) -> str:
    return f"{download_base_url.rstrip('/')}/odata/v1/Products({product_id})/$value"


class CdseProducts:
    """Opens product downloads at the configured CDSE download host, the only host that ever sees the token."""

    def __init__(self, session: requests.Session, tokens: TokenProvider | None, download_base_url: str) -> None:
        self._session = session
        self._tokens = tokens  # None: no CDSE account configured (enough for STAC items)
        self._base_url = check_url(download_base_url.rstrip("/"), "CDSE_DOWNLOAD_URL")
        self._host = urlsplit(self._base_url).netloc

    def opener(self, product_id: str) -> OpenResponse:
        url = download_url(self._base_url, product_id)
        what = f"CDSE product {product_id}"

        def open_response() -> requests.Response:
            provider = self._tokens
            if provider is None:
                raise HttpError("CDSE_USERNAME and CDSE_PASSWORD are needed to download CDSE products")

            def request(token: str) -> requests.Response:
                response = self._session.get(
                    url, headers={"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"}, stream=True
                )
                # requests drops the Authorization header on a redirect to another host; say so plainly.
                if response.status_code == 401 and urlsplit(response.url).netloc != self._host:
                    response.close()
                    raise HttpError(f"{what}: redirected to {urlsplit(response.url).netloc}, which wants a token", 401)
                return response

            response = provider.send(request)
            raise_for_status(response, what)
            return response

        return open_response
