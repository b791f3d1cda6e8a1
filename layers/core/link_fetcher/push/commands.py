"""`link-fetcher serve`: the push endpoint on a VM or laptop (the same handling as the Lambda)."""

from __future__ import annotations

import click

from link_fetcher.cli import CliContext, ConfigurationError, pass_context, stderr
from link_fetcher.push.endpoint import PushEndpoint
from link_fetcher.relay import BackgroundRelay
from link_fetcher.sinks import build_sinks


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0 for all).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="TCP port.")
@pass_context
def serve(obj: CliContext, host: str, port: int) -> int:
    """The CDSE push endpoint: POST /events with HTTP Basic auth (SUBSCRIPTION_USERNAME / _PASSWORD)."""
    import uvicorn

    from link_fetcher.push.server import create_app

    engine = obj.engine()  # start the embedded database (when used) before taking requests
    sinks = build_sinks(obj.settings)
    # A server delivers from one background relay: requests only record, and busy periods batch their sends.
    background = BackgroundRelay(engine, obj.settings, sinks) if sinks else None
    try:
        endpoint = PushEndpoint.from_settings(
            obj.settings, obj.engine, after_record=background.wake if background else None
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    stderr.print(
        f"push endpoint on http://{host}:{port}/events ({obj.database_description()})", highlight=False, soft_wrap=True
    )
    if background:
        background.start()
    try:
        uvicorn.run(create_app(endpoint), host=host, port=port, log_level="warning", access_log=False)
    finally:
        if background:
            background.stop()
    return 0
