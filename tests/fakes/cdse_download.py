"""A fake CDSE download service: `GET /odata/v1/Products({id})/$value` with a bearer token from a FakeIdentity,
and public files under `/public/<name>` (STAC asset hrefs). Product bytes are generated on the fly from a seed,
so a 1 GB product costs no memory; their MD5 / BLAKE3 are the real digests of those bytes.

Faults per product: `corrupt` (bytes differ from the announced checksums), `throttle_once` (429 first),
`drop_at` (the first transfer's connection is closed after that many bytes), `redirect_to` (302 elsewhere).

    with FakeIdentity() as identity, FakeCdseDownload(identity) as cdse:
        product = cdse.add_product(size=5_000_000)
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import blake3

from tests.fakes.cdse_identity import FakeIdentity
from tests.fakes.http_server import FakeHttpServer

BLOCK = 1024 * 1024
_PRODUCT_PATH = re.compile(r"^/odata/v1/Products\((?P<id>[^)]+)\)/\$value$")


def synthetic_bytes(seed: int, size: int, *, corrupt: bool = False) -> Iterator[bytes]:
    """`size` deterministic bytes: one pseudo-random block of the seed, repeated; `corrupt` flips one byte."""
    block = random.Random(seed).randbytes(min(BLOCK, max(size, 1)))
    sent = 0
    while sent < size:
        chunk = block[: min(len(block), size - sent)]
        if corrupt and sent == 0:
            chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
        yield chunk
        sent += len(chunk)


def digests(seed: int, size: int) -> tuple[str, str]:
    md5, b3 = hashlib.md5(usedforsecurity=False), blake3.blake3()
    for chunk in synthetic_bytes(seed, size):
        md5.update(chunk)
        b3.update(chunk)
    return md5.hexdigest(), b3.hexdigest()


@dataclasses.dataclass
class FakeProduct:
    id: str
    size: int
    seed: int
    md5: str
    blake3: str
    corrupt: bool = False
    throttle_once: bool = False
    drop_at: int | None = None
    redirect_to: str | None = None
    transfers: int = 0  # GETs answered 200
    last_transfer_seconds: float = 0.0  # first to last byte of the latest complete transfer


class FakeCdseDownload(FakeHttpServer):
    def __init__(self, identity: FakeIdentity) -> None:
        super().__init__()
        self.identity = identity
        self.products: dict[str, FakeProduct] = {}
        self.public: dict[str, tuple[int, int]] = {}  # name -> (seed, size)
        self.authorizations: list[str | None] = []  # Authorization header of every request, in order

    def add_product(self, size: int, *, product_id: str | None = None, seed: int | None = None, **faults: Any):
        product_id = product_id or str(uuid.uuid4())
        seed = seed if seed is not None else len(self.products) + 1
        md5, b3 = digests(seed, size)
        product = FakeProduct(product_id, size, seed, md5, b3, **faults)
        self.products[product_id] = product
        return product

    def add_public(self, name: str, size: int, seed: int = 7) -> str:
        self.public[name] = (seed, size)
        return f"{self.url}/public/{name}"

    def _route(self, path: str, authorization: str | None) -> tuple[int, dict[str, str], Iterator[bytes], int]:
        """(status, headers, body chunks, bytes to send before dropping the connection or -1)."""
        if path.startswith("/public/") and (public := self.public.get(path.removeprefix("/public/"))):
            seed, size = public
            return 200, {"Content-Length": str(size)}, synthetic_bytes(seed, size), -1
        product_id = _product_id(path)
        product = self.products.get(product_id) if product_id else None
        if product is None:
            return _text(404, '{"detail":"Not found"}')
        if not self.identity.is_valid(authorization):
            return _text(401, '{"detail":"Expired signature!"}')
        with self.lock:
            if product.throttle_once:
                product.throttle_once = False
                return _text(429, '{"detail":"Too many requests"}', {"Retry-After": "0"})
            if product.redirect_to:
                return _text(302, "", {"Location": product.redirect_to})
            drop_at, product.drop_at = product.drop_at, None
            product.transfers += 1
        headers = {"Content-Length": str(product.size), "Content-Type": "application/zip"}
        body = synthetic_bytes(product.seed, product.size, corrupt=product.corrupt)
        return 200, headers, body, -1 if drop_at is None else drop_at

    def start(self) -> FakeCdseDownload:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                authorization = self.headers.get("Authorization")
                with fake.lock:
                    fake.requests.append((self.command, self.path))
                    fake.authorizations.append(authorization)
                status, headers, body, drop_at = fake._route(self.path.split("?", 1)[0], authorization)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                sent, started = 0, time.perf_counter()
                for chunk in body:
                    if 0 <= drop_at < sent + len(chunk):
                        self.wfile.write(chunk[: drop_at - sent])
                        self.close_connection = True  # mid-body: the client sees the connection drop
                        return
                    self.wfile.write(chunk)
                    sent += len(chunk)
                if product_id := _product_id(self.path):
                    fake.products[product_id].last_transfer_seconds = time.perf_counter() - started

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self


def _product_id(path: str) -> str | None:
    match = _PRODUCT_PATH.match(path.split("?", 1)[0])
    return match["id"] if match else None


def _text(status: int, text: str, headers: dict[str, str] | None = None):
    payload = text.encode()
    return status, {"Content-Length": str(len(payload)), **(headers or {})}, iter([payload]), -1
