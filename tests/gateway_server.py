"""A real gateway for tests and benchmarks: the FastAPI app under uvicorn in a background thread."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import uvicorn

from link_fetcher.gateway.app import create_app
from link_fetcher.gateway.server import server_config
from link_fetcher.settings import Settings, read_settings

READ_KEY, WRITE_KEY, ADMIN_KEY = "test-read-key", "test-write-key", "test-admin-key"
API_KEYS = f"{READ_KEY}:read,{WRITE_KEY}:write,{ADMIN_KEY}:admin"


@contextlib.contextmanager
def running_gateway(settings: Settings) -> Iterator[str]:
    """Serve the gateway on a free port; yields its base URL (http://127.0.0.1:PORT)."""
    config = server_config(create_app(settings), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


LIMITS = {
    "gateway_max_count": 500,
    "gateway_max_block_ms": 2000,
    "gateway_max_entry_bytes": 1024,
    "gateway_max_connections_per_key": 3,
    "gateway_send_queue": 50,
    # Tests read far more than a key's budget allows a second; the budget has tests of its own.
    "gateway_key_entries_per_second": 1_000_000,
}


def gateway_settings(redis_url: str, database_url: str | None, **overrides: object) -> Settings:
    """Settings for a test gateway: the test keys, streams named lf-test-*, small limits tests can reach."""
    values: dict[str, object] = {
        "redis_url": redis_url,
        "database_url": database_url,
        "gateway_api_keys": API_KEYS,
        "gateway_streams": "lf-test-*",
        **LIMITS,
        **overrides,
    }
    return read_settings(None, **values)
