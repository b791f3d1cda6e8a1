"""`link-fetcher gateway`: serve the stream gateway under uvicorn."""

from __future__ import annotations

import logging
import re

import click

from link_fetcher.cli import CliContext, ConfigurationError, pass_context

_TOKEN_IN_QUERY = re.compile(r"(?<=[?&]token=)[^&\s]*")


def redact_tokens(text: str) -> str:
    """WebSocket clients may pass their key as `?token=`: access logs show `token=***` instead."""
    return _TOKEN_IN_QUERY.sub("***", text)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_tokens(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="TCP port.")
@pass_context
def gateway(obj: CliContext, host: str, port: int) -> int:
    """Serve the Redis delivery streams over REST, WebSocket and GraphQL, with the ops console at /."""
    import uvicorn

    from link_fetcher.gateway.app import create_app

    try:
        app = create_app(obj.settings)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    config = uvicorn.Config(app, host=host, port=port, ws="websockets-sansio", log_level="info")
    # After uvicorn.Config, which configures the uvicorn loggers.
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactTokens())
    uvicorn.Server(config).run()
    return 0
