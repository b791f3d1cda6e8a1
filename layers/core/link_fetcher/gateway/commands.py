"""`link-fetcher gateway`: serve the stream gateway under uvicorn."""

from __future__ import annotations

import logging

import click

from link_fetcher.cli_support import CliContext, ConfigurationError, pass_context


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="TCP port.")
@pass_context
def gateway(obj: CliContext, host: str, port: int) -> int:
    """Serve the Redis delivery streams over REST, WebSocket and GraphQL, with the ops console at /."""
    import uvicorn

    from link_fetcher.gateway.app import create_app
    from link_fetcher.gateway.server import RedactTokens, server_config

    try:
        app = create_app(obj.settings)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    config = server_config(app, host=host, port=port, log_level="info")
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactTokens())
    uvicorn.Server(config).run()
    return 0
