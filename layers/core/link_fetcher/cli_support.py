"""What every `link-fetcher` command shares: the failures it raises, the context holding settings and engine, the
consoles, and the delivery run that ends fetch, stac-fetch and reconcile. It imports no feature, so each feature's
`commands.py` imports it (and nothing of `cli.py`) and any module imports on its own."""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING

import click
from rich.console import Console

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from link_fetcher.recording import Recorder
    from link_fetcher.relay import RelayReport
    from link_fetcher.settings import Settings


class CliFailure(Exception):
    """A run that failed for a reason the user can act on: printed as one line, exit 1."""

    exit_code = 1


class ConfigurationError(CliFailure):
    exit_code = 2


@dataclasses.dataclass
class CliContext:
    """Settings and engine, created on first use so `--help` needs neither (nor their imports)."""

    _settings: Settings | None = None
    _engine: Engine | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from link_fetcher.settings import Settings

            self._settings = Settings()
        return self._settings

    def engine(self) -> Engine:
        if self._engine is None:
            from link_fetcher.database import engine_for

            self._engine = engine_for(self.settings, allow_embedded=True)
        return self._engine

    def database_description(self) -> str:
        from db import describe_url
        from link_fetcher.database import configured_url

        url = configured_url(self.settings)
        return describe_url(url) if url else f"embedded database in {self.settings.database.embedded_db_dir}"


pass_context = click.make_pass_decorator(CliContext)
# The type of a day option (`--day`, `--to`): a UTC day written YYYY-MM-DD.
DAY = click.DateTime(formats=["%Y-%m-%d"])
stdout = Console()
stderr = Console(stderr=True)


def cli_recorder(obj: CliContext) -> Recorder:
    """The shared recorder for a command: the configured sinks; its deliveries are reported on stderr
    (`report_delivery`), not published as metrics."""
    from link_fetcher.recording import Recorder
    from link_fetcher.sinks import build_sinks

    return Recorder.from_settings(obj.settings, obj.engine(), build_sinks(obj.settings), publish=False)


def run_relay(obj: CliContext, *, retry_failed: bool = False) -> RelayReport:
    return cli_recorder(obj).deliver(retry_failed=retry_failed)


def deliver_and_report(recorder: Recorder) -> int:
    """A source command's end: deliver what is pending, say so on stderr, and the exit status."""
    return report_delivery(recorder.deliver(), sinks_configured=bool(recorder.sinks))


def report_delivery(report: RelayReport, *, sinks_configured: bool = True) -> int:
    """Print what the relay did as one line on stderr; exit 1 while configured sinks leave deliveries pending or
    failed. Plain print: rich would wrap a long line at the console width."""
    delivered = "delivered: " + ", ".join(f"{sink} {sent}" for sink, sent in report.sent.items())
    if not sinks_configured:
        if report.pending:
            print(
                f"{report.pending} deliveries pending (no sink configured; `link-fetcher pending` lists them)",
                file=sys.stderr,
            )
        return 0
    if not (report.pending or report.failed):
        print(delivered, file=sys.stderr)
        return 0
    problems = [f"{sink} unavailable: {error}" for sink, error in report.unavailable.items()]
    problems += [f"{sink} refused {refused}" for sink, refused in report.refused.items() if refused]
    backlog = f"{report.pending} deliveries pending" + (f", {report.failed} failed" if report.failed else "")
    if problems:
        backlog += f" ({'; '.join(problems)})"
    hint = "run `link-fetcher relay` when the sink is back" + (
        " (`--retry-failed` retries the failed)" if report.failed else ""
    )
    print(f"{delivered}; {backlog}: {hint}", file=sys.stderr)
    return 1
