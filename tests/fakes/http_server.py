"""A threaded HTTP server on 127.0.0.1 that a fake service plugs its routing into."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

Reply = tuple[int, dict[str, str], bytes]


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode()


class DropMidBody(Exception):
    """Raised by `handle` to play a connection dropped mid-body: the reply's headers and half its body go out."""

    def __init__(self, reply: Reply) -> None:
        super().__init__("connection dropped mid-body")
        self.reply = reply


class FakeHttpServer:
    """Subclasses implement `handle`; `with Fake() as fake:` serves on a free port at `fake.url`."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []  # (method, path with query), in arrival order
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def handle(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> Reply:
        raise NotImplementedError

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHttpServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like the real services
            disable_nagle_algorithm = True  # else each small reply waits ~40 ms for a delayed ACK

            def _dispatch(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                with fake.lock:
                    fake.requests.append((self.command, self.path))
                headers = {key.lower(): value for key, value in self.headers.items()}
                try:
                    status, reply_headers, payload = fake.handle(self.command, parts.path, parts.query, headers, body)
                    sent = len(payload)
                except DropMidBody as drop:
                    (status, reply_headers, payload), sent = drop.reply, len(drop.reply[2]) // 2
                    self.close_connection = True
                self.send_response(status)
                for key, value in reply_headers.items():
                    if key.lower() != "content-length":
                        self.send_header(key, value)
                length = str(len(payload))
                if self.command == "HEAD":  # the length of what a GET would give
                    length = next((v for k, v in reply_headers.items() if k.lower() == "content-length"), length)
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":  # a HEAD answer has the headers of the GET and no body
                    self.wfile.write(payload[:sent])

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
