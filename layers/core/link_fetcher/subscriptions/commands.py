"""`link-fetcher subscriptions create|list|delete`: manage the CDSE push subscription that feeds `serve`/the Lambda."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TypeVar

import click

from link_fetcher.cdse_identity import token_provider
from link_fetcher.cli_support import CliContext, CliFailure, ConfigurationError, pass_context, stdout
from link_fetcher.http import HttpError, make_session
from link_fetcher.push.auth import credentials_source
from link_fetcher.secrets import SecretUnavailable
from link_fetcher.subscriptions.api import SHOWN_FIELDS, SubscriptionError, SubscriptionsApi, push_subscription

T = TypeVar("T")


def _api(obj: CliContext) -> SubscriptionsApi:
    settings = obj.settings
    tokens = token_provider(settings)
    if tokens is None:
        raise ConfigurationError("set CDSE_USERNAME and CDSE_PASSWORD (the CDSE account that owns the subscription)")
    # POST is not retried: a create that reached CDSE and is sent again would be refused as a second one.
    session = make_session(methods=("GET", "DELETE"))
    return SubscriptionsApi(settings.cdse_catalogue_url, tokens, session)


def _run[T](call: Callable[[], T]) -> T:
    """API errors become the CLI's one-line failures (exit 1)."""
    try:
        return call()
    except (SubscriptionError, HttpError) as exc:
        raise CliFailure(str(exc)) from exc


@click.group()
def subscriptions() -> None:
    """Manage the CDSE push subscription (CDSE allows one running subscription per account)."""


@subscriptions.command()
@click.option("--endpoint", "endpoint_url", required=True, help="Public URL of POST /events, e.g. https://host/events.")
@pass_context
def create(obj: CliContext, endpoint_url: str) -> int:
    """Subscribe ENDPOINT to new products of PRODUCT_TYPE; CDSE authenticates with the SUBSCRIPTION_* credentials."""
    if not endpoint_url.startswith(("https://", "http://")):
        raise click.BadParameter("must be an http(s) URL", param_hint="--endpoint")
    try:
        credentials = credentials_source(obj.settings)()
    except (ValueError, SecretUnavailable) as exc:
        raise ConfigurationError(str(exc)) from exc
    api = _api(obj)
    body = push_subscription(endpoint_url, credentials.username, credentials.password, obj.settings.product_type)
    created = _run(lambda: api.create(body))
    stdout.print(
        f"created subscription {created.get('Id')} ({created.get('Status')}) → {endpoint_url}", highlight=False
    )
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
