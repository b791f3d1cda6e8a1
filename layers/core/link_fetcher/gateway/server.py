"""How the gateway runs under uvicorn: its server settings, and keys kept out of the access log."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn

_TOKEN_IN_QUERY = re.compile(r"(?<=[?&]token=)[^&\s]*")


def redact_tokens(text: str) -> str:
    """WebSocket clients may pass their key as `?token=`: access logs show `token=***` instead."""
    return _TOKEN_IN_QUERY.sub("***", text)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_tokens(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


def server_config(app: Any, *, host: str, port: int, log_level: str) -> uvicorn.Config:
    """uvicorn settings for the gateway. No permessage-deflate: compressing every small frame costs more CPU than
    the bandwidth it saves on a local network (docs/benchmarks.md). Call before adding log filters: uvicorn.Config
    configures the uvicorn loggers."""
    import uvicorn  # only the gateway needs it; other commands start faster without

    return uvicorn.Config(
        app, host=host, port=port, ws="websockets-sansio", ws_per_message_deflate=False, log_level=log_level
    )
