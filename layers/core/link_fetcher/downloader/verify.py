"""Checksums computed while the bytes stream by, and the comparison with what CDSE announced."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
from concurrent.futures import Future, ThreadPoolExecutor

import blake3


@dataclasses.dataclass(frozen=True, slots=True)
class Expected:
    size: int | None = None
    md5: str | None = None
    blake3: str | None = None


class ChecksumMismatch(RuntimeError):
    """The bytes received are not the product announced (size or digest differs)."""


class Digests:
    """Running size and the digests `expected` asks for (a digest nobody will compare is not computed).

    MD5 is the slowest step of a download, so it runs on its own thread while the caller reads, hashes BLAKE3 and
    writes the next chunks (hashlib releases the GIL). At most MD5_CHUNKS_IN_FLIGHT chunks wait for it, which
    bounds the memory. Use as a context manager.
    """

    MD5_CHUNKS_IN_FLIGHT = 4

    def __init__(self, expected: Expected) -> None:
        self.expected = expected
        self.size = 0
        self._md5 = hashlib.md5(usedforsecurity=False) if expected.md5 else None
        self._blake3 = blake3.blake3() if expected.blake3 else None
        self._md5_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="md5") if self._md5 else None
        self._md5_pending: collections.deque[Future[None]] = collections.deque()

    def __enter__(self) -> Digests:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._md5_worker is not None:
            self._md5_worker.shutdown(wait=True, cancel_futures=True)

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._md5 is not None and self._md5_worker is not None:
            if len(self._md5_pending) >= self.MD5_CHUNKS_IN_FLIGHT:
                self._md5_pending.popleft().result()
            self._md5_pending.append(self._md5_worker.submit(self._md5.update, chunk))  # one worker: in order
        if self._blake3 is not None:
            self._blake3.update(chunk)

    def mismatch(self) -> str | None:
        """None when everything announced matches, else what differs (one line)."""
        while self._md5_pending:
            self._md5_pending.popleft().result()
        expected = self.expected
        if expected.size is not None and self.size != expected.size:
            return f"size {self.size} != expected {expected.size}"
        if self._md5 is not None and expected.md5 and self._md5.hexdigest() != expected.md5.lower():
            return f"MD5 {self._md5.hexdigest()} != expected {expected.md5}"
        if self._blake3 is not None and expected.blake3 and self._blake3.hexdigest() != expected.blake3.lower():
            return f"BLAKE3 {self._blake3.hexdigest()} != expected {expected.blake3}"
        return None
