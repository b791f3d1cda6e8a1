"""Where downloaded objects go: an S3 bucket (multipart upload) or a local folder (temporary file + rename).

Either way an object becomes visible only on `commit()`, after the caller verified the bytes; `abort()`
leaves nothing behind. Memory per writer is bounded by the S3 part size, whatever the object size.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import secrets
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

if TYPE_CHECKING:
    from link_fetcher.settings import Settings

log = logging.getLogger(__name__)

# S3 parts: 8 MiB (the minimum is 5 MiB; 10,000 parts then allow 80 GB). One part uploads while the next fills.
PART_SIZE = 8 * 1024 * 1024
LIST_PAGE = 1000
TEMP_MARKER = ".partial-"


@dataclasses.dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    modified: dt.datetime


class ObjectWriter(Protocol):
    def write(self, chunk: bytes) -> None: ...

    def commit(self) -> None:
        """Make the object visible under its key (replacing any previous one)."""

    def abort(self) -> None:
        """Discard what was written; safe to call after a failure at any point."""


class Storage(Protocol):
    def writer(self, key: str, content_type: str) -> ObjectWriter: ...

    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def sizes(self, keys: Sequence[str]) -> dict[str, int]:
        """{key: size} for the keys that exist."""

    def list_objects(self, since: dt.datetime | None = None) -> Iterator[list[StoredObject]]:
        """Every visible object (written at or after `since`), a page at a time."""

    def uri(self, key: str) -> str: ...

    def delete(self, keys: Sequence[str]) -> None:
        """Remove the objects; keys already absent are no error."""
        ...

    def describe(self) -> str: ...


# --- local folder ----------------------------------------------------------------------------------------


class _FileWriter:
    def __init__(self, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        self._final = final
        self._temp = final.with_name(f"{final.name}{TEMP_MARKER}{secrets.token_hex(4)}")
        self._file: BinaryIO | None = open(self._temp, "wb")  # noqa: SIM115 - closed in commit/abort

    def write(self, chunk: bytes) -> None:
        assert self._file is not None
        self._file.write(chunk)

    def commit(self) -> None:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())  # the rename must not expose a file whose bytes are not on disk
        self._file.close()
        self._file = None
        os.replace(self._temp, self._final)

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._temp.unlink(missing_ok=True)


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"object key {key!r} escapes {self.root}")
        return path

    def writer(self, key: str, content_type: str) -> ObjectWriter:
        return _FileWriter(self._path(key))

    def put(self, key: str, data: bytes, content_type: str) -> None:
        writer = self.writer(key, content_type)
        try:
            writer.write(data)
            writer.commit()
        except BaseException:
            writer.abort()
            raise

    def sizes(self, keys: Sequence[str]) -> dict[str, int]:
        found = {}
        for key in keys:
            try:
                found[key] = self._path(key).stat().st_size
            except FileNotFoundError:
                continue
        return found

    def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)

    def list_objects(self, since: dt.datetime | None = None) -> Iterator[list[StoredObject]]:
        page: list[StoredObject] = []
        threshold = since.timestamp() if since else None
        for folder, _, names in os.walk(self.root):
            for name in names:
                if TEMP_MARKER in name:
                    continue  # a download in progress (or one a crash left): not an object
                path = Path(folder, name)
                stat = path.stat()
                if threshold is not None and stat.st_mtime < threshold:
                    continue
                modified = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC)
                page.append(StoredObject(path.relative_to(self.root).as_posix(), stat.st_size, modified))
                if len(page) == LIST_PAGE:
                    yield page
                    page = []
        if page:
            yield page

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def describe(self) -> str:
        return str(self.root)


# --- S3 --------------------------------------------------------------------------------------------------


class _MultipartWriter:
    """Parts of PART_SIZE, uploaded by one background thread while the next part fills (≤ 2 parts in memory)."""

    def __init__(self, client: Any, bucket: str, key: str, content_type: str) -> None:
        self._client, self._bucket, self._key = client, bucket, key
        self._upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)["UploadId"]
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._uploader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-part")
        self._in_flight: Future[dict[str, Any]] | None = None

    def _upload(self, number: int, body: bytearray) -> dict[str, Any]:
        response = self._client.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=body
        )
        return {"PartNumber": number, "ETag": response["ETag"]}

    def _flush(self) -> None:
        if self._in_flight is not None:
            self._parts.append(self._in_flight.result())
            self._in_flight = None
        if self._buffer:
            number = len(self._parts) + 1
            self._in_flight = self._uploader.submit(self._upload, number, self._buffer)
            self._buffer = bytearray()

    def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        if len(self._buffer) >= PART_SIZE:
            self._flush()

    def commit(self) -> None:
        self._flush()  # the last (short) part
        self._flush()  # wait for it
        self._uploader.shutdown()
        if not self._parts:  # an empty object: S3 needs at least one part
            self._parts.append(self._upload(1, bytearray()))
        self._client.complete_multipart_upload(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
        )

    def abort(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self._uploader.shutdown(wait=True, cancel_futures=True)
        self._buffer = bytearray()
        try:
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
        except (BotoCoreError, ClientError) as exc:
            # The upload was never completed, so nothing is visible; the bucket's lifecycle rule removes its parts.
            log.warning("could not abort the multipart upload of %s: %s", self._key, exc)


class S3Storage:
    def __init__(self, bucket: str, client: Any = None) -> None:
        self.bucket = bucket
        self._client = client or s3_client()

    def writer(self, key: str, content_type: str) -> ObjectWriter:
        return _MultipartWriter(self._client, self.bucket, key, content_type)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def sizes(self, keys: Sequence[str]) -> dict[str, int]:
        from botocore.exceptions import ClientError

        def head(key: str) -> int | None:
            try:
                return int(self._client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise

        if len(keys) == 1:
            size = head(keys[0])
            return {} if size is None else {keys[0]: size}
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="s3-head") as pool:
            return {key: size for key, size in zip(keys, pool.map(head, keys), strict=True) if size is not None}

    def delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            chunk = keys[start : start + 1000]
            self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in chunk]})

    def list_objects(self, since: dt.datetime | None = None) -> Iterator[list[StoredObject]]:
        paginator = self._client.get_paginator("list_objects_v2")
        for response in paginator.paginate(Bucket=self.bucket, PaginationConfig={"PageSize": LIST_PAGE}):
            page = [
                StoredObject(entry["Key"], entry["Size"], entry["LastModified"])
                for entry in response.get("Contents", [])
                if since is None or entry["LastModified"] >= since
            ]
            if page:
                yield page

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def describe(self) -> str:
        return f"s3://{self.bucket}"


def s3_client() -> Any:
    import boto3
    from botocore.config import Config

    # Timeouts and standard retries; enough pooled connections for the downloads and the HEAD fan-out.
    config = Config(
        connect_timeout=10, read_timeout=60, retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=16
    )
    return boto3.client("s3", config=config)


def build_storage(settings: Settings) -> Storage:
    """S3 when UPLOAD_BUCKET is set, else the DOWNLOAD_DIR folder."""
    if settings.downloader.upload_bucket:
        return S3Storage(settings.downloader.upload_bucket)
    return LocalStorage(settings.downloader.download_dir)
