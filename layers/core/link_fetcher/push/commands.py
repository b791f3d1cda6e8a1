"""`link-fetcher serve`: the push endpoint on a VM or laptop (the same handling as the Lambda)."""

from __future__ import annotations

import click

from link_fetcher.cli import CliContext, ConfigurationError, pass_context, stderr
from link_fetcher.push.endpoint import PushEndpoint


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0 for all).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="TCP port.")
@pass_context
def serve(obj: CliContext, host: str, port: int) -> int:
    """The CDSE push endpoint: POST /events with HTTP Basic auth (SUBSCRIPTION_USERNAME / _PASSWORD)."""
    import uvicorn

    from link_fetcher.push.server import create_app

    try:
        endpoint = PushEndpoint.from_settings(obj.settings, obj.engine)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    obj.engine()  # start the embedded database (when used) before taking requests
    stderr.print(
        f"push endpoint on http://{host}:{port}/events ({obj.database_description()})", highlight=False, soft_wrap=True
    )
    uvicorn.run(create_app(endpoint), host=host, port=port, log_level="warning", access_log=False)
    return 0
