"""`link-fetcher serve`: the push endpoint on a VM or laptop (the same handling as the Lambda)."""

from __future__ import annotations

import contextlib
import functools

import click

from link_fetcher.cli_support import CliContext, pass_context, stderr


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0 for all).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="TCP port.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Server processes, each with its own background relay [default: one per core].",
)
@pass_context
def serve(obj: CliContext, host: str, port: int, workers: int | None) -> int:
    """The CDSE push endpoint: POST /events with HTTP Basic auth (SUBSCRIPTION_USERNAME / _PASSWORD).

    Requests record; a background relay in each process delivers to the configured sinks."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from link_fetcher.push.server import default_workers, serving_app, worker_app
    from link_fetcher.push.timeouts import HTTP_PROTOCOL

    workers = workers or default_workers()

    engine = obj.engine()  # start the embedded database (when used) before taking requests
    app = serving_app(obj.settings, engine)
    stderr.print(
        f"push endpoint on http://{host}:{port}/events ({obj.database_description()}, {workers} worker(s))",
        highlight=False,
        soft_wrap=True,
    )
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, http=HTTP_PROTOCOL)
        return 0
    # uvicorn.run() takes only an import string for several workers; its supervisor takes any picklable factory,
    # so each worker gets this process's settings and database (the embedded one it started, say) as arguments.
    factory = functools.partial(worker_app, obj.settings, engine.url.render_as_string(hide_password=False))
    config = uvicorn.Config(
        factory, factory=True, workers=workers, host=host, port=port, log_level="warning", access_log=False,
        http=HTTP_PROTOCOL,
    )  # fmt: skip
    with contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    return 0
