"""Bytes from CDSE (bearer token) or a public STAC href, streamed into a storage writer and verified on the way.

Transient failures are retried: 429/5xx and refused connections by the session (`http.make_session`), a
connection dropped mid-body by restarting the transfer (`http.with_retries`), a checksum mismatch by one
more full transfer. Whatever fails, the writer is aborted: no half-written object becomes visible.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import requests

from link_fetcher.cdse_identity import TokenProvider
from link_fetcher.downloader.objects import check_url
from link_fetcher.downloader.storage import ObjectWriter, Storage
from link_fetcher.downloader.verify import ChecksumMismatch, Digests, Expected
from link_fetcher.http import HttpError, raise_for_status, with_retries
from link_fetcher.products import download_url

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
# Full transfers of bytes that arrived but did not verify, before the granule is marked failed.
VERIFY_ATTEMPTS = 2
ZIP_TYPE = "application/zip"

OpenResponse = Callable[[], requests.Response]


def stream_verified(
    open_response: OpenResponse, storage: Storage, key: str, expected: Expected, *, what: str, content_type: str
) -> int:
    """Transfer one object into `storage[key]`, committing it only when it matches `expected`; return its size."""

    def transfer() -> int:
        writer: ObjectWriter | None = None
        response = open_response()
        try:
            announced = response.headers.get("Content-Length")
            if expected.size is not None and announced is not None and int(announced) != expected.size:
                raise ChecksumMismatch(f"{what}: the server announces {announced} bytes, expected {expected.size}")
            writer = storage.writer(key, content_type)
            with Digests(expected) as digests:
                for chunk in response.iter_content(CHUNK_SIZE):
                    digests.update(chunk)
                    writer.write(chunk)
                if problem := digests.mismatch():
                    raise ChecksumMismatch(f"{what}: {problem}")
            writer.commit()
            return digests.size
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            response.close()

    for attempt in range(1, VERIFY_ATTEMPTS + 1):
        try:
            return with_retries(transfer, what=what)
        except ChecksumMismatch as exc:
            if attempt == VERIFY_ATTEMPTS:
                raise
            log.warning("%s, transferring again", exc)
    raise AssertionError("unreachable")


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


def public_opener(session: requests.Session, href: str, what: str) -> OpenResponse:
    url = check_url(href, what)

    def open_response() -> requests.Response:
        response = session.get(url, headers={"Accept-Encoding": "identity"}, stream=True)
        raise_for_status(response, what)
        return response

    return open_response
