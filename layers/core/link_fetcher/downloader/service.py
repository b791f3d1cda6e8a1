"""Download recorded granules: one code path for `download --id`, `download --from-queue` and the Lambda."""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import Engine

from db import GranuleRow
from link_fetcher.cdse.downloads import CdseProducts
from link_fetcher.cdse.identity import token_provider
from link_fetcher.downloader import objects, state
from link_fetcher.downloader.storage import Storage, build_storage
from link_fetcher.downloader.transfer import ZIP_TYPE, public_opener, stream_verified
from link_fetcher.downloader.verify import ChecksumMismatch, Expected
from link_fetcher.http import HttpError, make_session
from link_fetcher.settings import Settings

log = logging.getLogger(__name__)

# What fails one granule (recorded on its row) rather than the run: the database being down is not here.
_GRANULE_FAILURES = (
    HttpError,
    ChecksumMismatch,
    requests.RequestException,
    BotoCoreError,
    ClientError,
    ValueError,
    OSError,
)


class Result(enum.StrEnum):
    DOWNLOADED = "downloaded"
    SKIPPED = "skipped"  # already downloaded and its objects are in place
    DELETED = "deleted"  # CDSE deleted it: not downloaded (and its stored objects removed when so configured)
    FAILED = "failed"
    UNKNOWN = "unknown"  # no such granule recorded


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    granule_id: str
    result: Result
    object_key: str | None = None
    size: int = 0  # bytes transferred
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.result in (Result.DOWNLOADED, Result.SKIPPED, Result.DELETED)


def granule_id_of(body: str | Mapping[str, Any]) -> str:
    """The granule id of a To Download message body (SPEC §5). ValueError for anything else."""
    try:
        message = json.loads(body) if isinstance(body, str) else body
    except json.JSONDecodeError as exc:
        raise ValueError(f"message body is not JSON: {exc}") from exc
    granule_id = message.get("id") if isinstance(message, Mapping) else None
    if not isinstance(granule_id, str) or not granule_id:
        raise ValueError("message body has no granule `id`")
    return granule_id


class Downloader:
    def __init__(
        self,
        engine: Engine,
        storage: Storage,
        session: requests.Session,
        products: CdseProducts,
        concurrency: int,
        *,
        remove_deleted: bool = False,
    ) -> None:
        """`remove_deleted`: remove the stored objects of a granule CDSE deleted (DELETE_DOWNLOADED_ON_DELETION)."""
        self.engine = engine
        self.remove_deleted = remove_deleted
        self.storage = storage
        self._session = session
        self._products = products
        self.concurrency = concurrency

    def download(self, ids: Sequence[str], on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
        """Download the granules, at most `concurrency` at a time; outcomes in the order of `ids`."""
        ids = list(dict.fromkeys(ids))
        with self.engine.connect() as conn:
            rows, unreadable = state.load_granules(conn, ids)

        def one(granule_id: str) -> Outcome:
            if row := rows.get(granule_id):
                outcome = self._download_row(row)
            elif granule_id in unreadable:
                # Its row cannot be written either (it breaks the range checks): the outcome carries the error.
                log.error("%s failed: %s", granule_id, unreadable[granule_id])
                outcome = Outcome(granule_id, Result.FAILED, error=unreadable[granule_id])
            else:
                outcome = Outcome(granule_id, Result.UNKNOWN, error="not recorded")
            if on_outcome:
                on_outcome(outcome)
            return outcome

        if len(ids) <= 1 or self.concurrency == 1:
            return [one(granule_id) for granule_id in ids]
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="download") as pool:
            return list(pool.map(one, ids))

    def _download_row(self, granule: GranuleRow) -> Outcome:
        granule_id = granule["id"]
        try:
            if granule.get("deleted_at") is not None:
                return self._deleted(granule)
            if granule["downloaded"] and self._in_place(granule):
                stored = objects.stored_key(granule)
                log.info("%s already stored at %s", granule_id, stored)
                return Outcome(granule_id, Result.SKIPPED, object_key=stored)
            key = objects.object_key(granule)
            size = self._store_stac(granule) if objects.is_stac(granule) else self._store_product(granule, key)
        except _GRANULE_FAILURES as exc:
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("%s failed: %s", granule_id, error)
            with self.engine.begin() as conn:
                state.mark_failed(conn, granule_id, error)
            return Outcome(granule_id, Result.FAILED, error=error)
        with self.engine.begin() as conn:
            state.mark_downloaded(conn, granule_id, key)
        log.info("%s stored at %s (%d bytes)", granule_id, key, size)
        return Outcome(granule_id, Result.DOWNLOADED, object_key=key, size=size)

    def _deleted(self, granule: GranuleRow) -> Outcome:
        """A granule CDSE withdrew is never downloaded; what was stored of it is removed if so configured."""
        granule_id, key = granule["id"], objects.stored_key(granule)
        if self.remove_deleted and granule["downloaded"]:
            self.storage.delete([obj.key for obj in objects.expected_objects(granule)])
            with self.engine.begin() as conn:
                state.reset_downloads(conn, [granule_id], f"removed: deleted by CDSE ({granule['deletion_cause']})")
            log.info("%s deleted by CDSE: removed %s", granule_id, key)
        else:
            log.info("%s deleted by CDSE: not downloaded", granule_id)
        return Outcome(granule_id, Result.DELETED, object_key=key)

    def _in_place(self, granule: GranuleRow) -> bool:
        expected = objects.expected_objects(granule)
        found = self.storage.sizes([obj.key for obj in expected])
        return all(obj.key in found and obj.size in (None, found[obj.key]) for obj in expected)

    def _store_product(self, granule: GranuleRow, key: str) -> int:
        expected = Expected(size=granule.get("size"), md5=granule.get("checksum"), blake3=granule.get("blake3"))
        return stream_verified(
            self._products.opener(granule["id"]),
            self.storage,
            key,
            expected,
            what=f"CDSE product {granule['id']}",
            content_type=ZIP_TYPE,
        )

    def _store_stac(self, granule: GranuleRow) -> int:
        """The selected assets (public, no token), then the item JSON pointing at the stored copies."""
        hrefs = granule.get("assets") or {}
        item = granule.get("item") or {}
        stored, total = {}, 0
        for band, key in objects.asset_keys(granule).items():
            what = f"{granule['id']} asset {band}"
            content_type = (item.get("assets", {}).get(band) or {}).get("type") or "application/octet-stream"
            total += stream_verified(
                public_opener(self._session, hrefs[band], what),
                self.storage,
                key,
                Expected(),
                what=what,
                content_type=content_type,
            )
            stored[band] = self.storage.uri(key)
        document = json.dumps(objects.rewrite_item(item, stored), separators=(",", ":")).encode()
        self.storage.put(objects.object_key(granule), document, "application/geo+json")
        return total + len(document)


def build_downloader(settings: Settings, engine: Engine, storage: Storage | None = None) -> Downloader:
    session = make_session(pool_size=settings.downloader.download_concurrency)
    tokens = token_provider(settings)
    products = CdseProducts(session, tokens, settings.cdse.download_url)
    return Downloader(
        engine,
        storage or build_storage(settings),
        session,
        products,
        settings.downloader.download_concurrency,
        remove_deleted=settings.downloader.delete_downloaded_on_deletion,
    )
