"""`link-fetcher subscriptions create|list|delete|pull`: manage the CDSE subscription that feeds `serve`/the Lambda
(push), or read a PULL subscription's queue from wherever link-fetcher runs (no public endpoint needed)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from typing import TypeVar

import click

from link_fetcher.cdse.identity import token_provider
from link_fetcher.cdse.subscriptions import (
    SHOWN_FIELDS,
    SubscriptionError,
    SubscriptionsApi,
    pull_subscription,
    push_subscription,
)
from link_fetcher.cli_support import CliContext, CliFailure, pass_context, stdout
from link_fetcher.http import HttpError, make_session
from link_fetcher.push.auth import credentials_source

T = TypeVar("T")


def _api(obj: CliContext) -> SubscriptionsApi:
    settings = obj.settings
    settings.cdse.credentials.required()  # the account that owns the subscription
    tokens = token_provider(settings)
    assert tokens is not None  # required() checked that an account is configured
    # POST is not retried: a create that reached CDSE and is sent again would be refused as a second one (and
    # an Ack that failed is simply sent again by the next pull).
    session = make_session(methods=("GET", "DELETE"))
    return SubscriptionsApi(settings.cdse.catalogue_url, tokens, session)


def _run[T](call: Callable[[], T]) -> T:
    """API errors become the CLI's one-line failures (exit 1)."""
    try:
        return call()
    except (SubscriptionError, HttpError) as exc:
        raise CliFailure(str(exc)) from exc


@click.group()
def subscriptions() -> None:
    """Manage the CDSE subscription, push or PULL (CDSE allows one running subscription per account)."""


@subscriptions.command()
@click.option("--endpoint", "endpoint_url", help="Public URL of POST /events, e.g. https://host/events (push).")
@click.option("--pull", "pull", is_flag=True, help="A PULL subscription instead: `subscriptions pull` reads it.")
@pass_context
def create(obj: CliContext, endpoint_url: str | None, pull: bool) -> int:
    """Subscribe to new and deleted products of PRODUCT_TYPE: pushed to ENDPOINT (CDSE authenticates with the
    SUBSCRIPTION_* credentials), or with --pull queued at CDSE for `subscriptions pull`."""
    if pull == bool(endpoint_url):
        raise click.UsageError("give either --endpoint URL (push) or --pull")
    if pull:
        body = pull_subscription(obj.settings.criteria.product_type)
        target = "pull: read it with `link-fetcher subscriptions pull`"
    else:
        assert endpoint_url is not None
        if not endpoint_url.startswith(("https://", "http://")):
            raise click.BadParameter("must be an http(s) URL", param_hint="--endpoint")
        credentials = credentials_source(obj.settings)()
        body = push_subscription(
            endpoint_url, credentials.username, credentials.password, obj.settings.criteria.product_type
        )
        target = endpoint_url
    api = _api(obj)
    created = _run(lambda: api.create(body))
    stdout.print(f"created subscription {created.get('Id')} ({created.get('Status')}) → {target}", highlight=False)
    return 0


@subscriptions.command("list")
@pass_context
def list_command(obj: CliContext) -> int:
    """The account's subscriptions as JSON lines (Id, Status, SubscriptionEvent, NotificationEndpoint, …)."""
    api = _api(obj)
    for subscription in _run(api.list):
        sys.stdout.write(json.dumps({field: subscription.get(field) for field in SHOWN_FIELDS}) + "\n")
    return 0


@subscriptions.command()
@click.argument("subscription_id", metavar="ID")
@pass_context
def delete(obj: CliContext, subscription_id: str) -> int:
    """Delete subscription ID."""
    api = _api(obj)
    _run(lambda: api.delete(subscription_id))
    stdout.print(f"deleted subscription {subscription_id}", highlight=False)
    return 0


@subscriptions.command("pull")
@click.option("--max", "max_notifications", type=click.IntRange(1), help="Stop after this many notifications.")
@click.option(
    "--follow", is_flag=True, help="Keep reading (pausing up to 15 s while the queue is empty); Ctrl-C stops."
)
@pass_context
def pull_command(obj: CliContext, max_notifications: int | None, follow: bool) -> int:
    """Read the PULL subscription's notifications (PULL_SUBSCRIPTION_ID, else the account's running pull
    subscription), record them as the push endpoint does, acknowledge them, and deliver.

    Safe to stop at any moment: what was recorded but not acknowledged is read again and changes nothing."""
    from link_fetcher.cli_support import cli_recorder, deliver_and_report
    from link_fetcher.subscriptions.pull import PullReport, PullSession

    recorder = cli_recorder(obj)
    api = _api(obj)
    session = _run(lambda: PullSession.from_settings(obj.settings, recorder, api))
    report = PullReport()

    def deliver(granule_ids: list[str]) -> None:
        if follow and recorder.sinks:  # following: deliver each batch as it comes (otherwise once at the end)
            recorder.deliver()

    # Ctrl-C ends --follow; every batch read so far is recorded and acknowledged.
    with contextlib.suppress(KeyboardInterrupt):
        _run(
            lambda: session.run(
                max_notifications=max_notifications,
                follow=follow,
                on_recorded=deliver,
                report=report,
            )
        )
    print(
        f"pull {session.subscription_id}: {report.read} notifications read, {report.recorded} recorded, "
        f"{report.announced} deletions announced, {report.remembered} remembered, {report.refused} not believed, "
        f"{report.skipped} unchanged or filtered, {report.other_subscription} of other subscriptions, "
        f"{report.gone} gone, {report.malformed} unreadable",
        file=sys.stderr,
    )
    return deliver_and_report(recorder)
