"""Bytes from CDSE (`cdse.downloads`, bearer token) or a public STAC href, streamed into a storage writer and
verified on the way.

Transient failures are retried: 429/5xx and refused connections by the session (`http.make_session`), a
connection dropped mid-body by restarting the transfer (`http.with_retries`), a checksum mismatch by one
more full transfer. Whatever fails, the writer is aborted: no half-written object becomes visible.
"""

from __future__ import annotations

import logging

import requests

from link_fetcher.cdse.downloads import OpenResponse
from link_fetcher.downloader.storage import ObjectWriter, Storage
from link_fetcher.downloader.verify import ChecksumMismatch, Digests, Expected
from link_fetcher.http import check_url, raise_for_status, with_retries

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
# Full transfers of bytes that arrived but did not verify, before the granule is marked failed.
VERIFY_ATTEMPTS = 2
ZIP_TYPE = "application/zip"


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


def public_opener(session: requests.Session, href: str, what: str) -> OpenResponse:
    url = check_url(href, what)

    def open_response() -> requests.Response:
        response = session.get(url, headers={"Accept-Encoding": "identity"}, stream=True)
        raise_for_status(response, what)
        return response

    return open_response
