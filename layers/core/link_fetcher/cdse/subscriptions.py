"""The CDSE Subscriptions API (OData) with a Keycloak bearer token: create, list and delete subscriptions; read
and acknowledge a PULL subscription's notifications."""

from __future__ import annotations

import builtins
from typing import Any
from urllib.parse import quote

import requests

from link_fetcher.cdse.identity import TokenProvider
from link_fetcher.http import HttpError, raise_for_status, with_retries
from link_fetcher.mission import MISSION

SUBSCRIPTIONS_PATH = "/odata/v1/Subscriptions"
# Fields of a listed subscription that are shown; the endpoint's password never is.
SHOWN_FIELDS = (
    "Id",
    "SubscriptionType",
    "Status",
    "SubscriptionEvent",
    "NotificationEndpoint",
    "SubmissionDate",
    "FilterParam",
)
# Events every subscription asks for (SPEC §3, §9).
EVENTS = ["created", "deleted"]
# Notifications one Read returns at most (CDSE's limit).
MAX_READ = 20


class SubscriptionError(RuntimeError):
    """CDSE refused or failed a subscription request; the message is one line for the user."""


def filter_param(product_type: str, collection: str = MISSION.collection) -> str:
    """The OData filter of the products to be notified of: the collection and product type the poller searches."""
    return (
        f"Collection/Name eq '{collection}' and Attributes/OData.CSC.StringAttribute/any("
        f"att:att/Name eq 'productType' and att/OData.CSC.StringAttribute/Value eq '{product_type}')"
    )


def pull_subscription(product_type: str) -> dict[str, Any]:
    """The body of a create request: a running PULL subscription (a queue at CDSE) to `created` and `deleted`."""
    return {
        "StageOrder": True,
        "Priority": 1,
        "Status": "running",
        "SubscriptionEvent": list(EVENTS),
        "SubscriptionType": "pull",  # required by CDSE since July 2025
        "FilterParam": filter_param(product_type),
    }


def push_subscription(endpoint_url: str, username: str, password: str, product_type: str) -> dict[str, Any]:
    """The body of a create request: a running push subscription to `created` and `deleted` events."""
    return pull_subscription(product_type) | {
        "SubscriptionType": "push",
        "NotificationEndpoint": endpoint_url,
        "NotificationEpUsername": username,
        "NotificationEpPassword": password,
    }


class SubscriptionsApi:
    def __init__(self, catalogue_url: str, tokens: TokenProvider, session: requests.Session) -> None:
        self._url = catalogue_url.rstrip("/") + SUBSCRIPTIONS_PATH
        self._tokens = tokens
        self._session = session

    def create(self, subscription: dict[str, Any]) -> dict[str, Any]:
        response = self._request("POST", self._url, json=subscription)
        if response.status_code == 403:
            raise SubscriptionError(
                "CDSE refused the subscription (403): one running subscription per user is allowed; "
                f"`subscriptions list` shows it, `subscriptions delete ID` removes it ({_detail(response)})"
            )
        self._check(response, "create subscription")
        created: dict[str, Any] = response.json()
        return created

    def list(self) -> list[dict[str, Any]]:
        response = self._request("GET", f"{self._url}/Info")
        self._check(response, "list subscriptions")
        listed = response.json()
        subscriptions: list[dict[str, Any]] = listed.get("value", []) if isinstance(listed, dict) else listed
        return subscriptions

    def delete(self, subscription_id: str) -> None:
        response = self._request("DELETE", self._one(subscription_id))
        if response.status_code == 404:
            raise SubscriptionError(f"subscription {subscription_id} not found (404): `subscriptions list` shows yours")
        self._check(response, "delete subscription")

    def running_pull(self) -> str:
        """The Id of the account's running PULL subscription; SubscriptionError when there is none."""
        for subscription in self.list():
            if subscription.get("SubscriptionType") == "pull" and subscription.get("Status") == "running":
                return str(subscription["Id"])
        raise SubscriptionError(
            "no running pull subscription: `subscriptions create --pull` makes one (or set PULL_SUBSCRIPTION_ID)"
        )

    def read(self, subscription_id: str, top: int = MAX_READ) -> builtins.list[dict[str, Any]]:
        """The oldest unacknowledged notifications (≤ 20), oldest first; reading removes nothing."""
        response = self._request("GET", f"{self._one(subscription_id)}/Read", params={"$top": str(min(top, MAX_READ))})
        if response.status_code == 404:
            raise SubscriptionError(f"subscription {subscription_id} not found (404): `subscriptions list` shows yours")
        self._check(response, "read notifications")
        answer = response.json()
        notifications = answer.get("value", []) if isinstance(answer, dict) else answer
        if not isinstance(notifications, list):
            raise SubscriptionError("CDSE read notifications: unexpected answer (not a list)")
        return notifications

    def ack(self, subscription_id: str, ack_id: str) -> None:
        """Acknowledge a notification and every one before it (they leave the queue)."""
        response = self._request("POST", f"{self._one(subscription_id)}/Ack", params={"$ackid": ack_id})
        self._check(response, "acknowledge notifications")

    def _one(self, subscription_id: str) -> str:
        return f"{self._url}({quote(subscription_id, safe='')})"

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One call with a bearer token (a fresh one after a 401, see TokenProvider.send)."""

        def request(token: str) -> requests.Response:
            return with_retries(
                lambda: self._session.request(method, url, headers={"Authorization": f"Bearer {token}"}, **kwargs),
                what=f"CDSE subscriptions ({method})",
            )

        return self._tokens.send(request)

    @staticmethod
    def _check(response: requests.Response, what: str) -> None:
        if response.status_code == 401:
            raise SubscriptionError(f"CDSE refused the token (401) to {what}: check CDSE_USERNAME / CDSE_PASSWORD")
        try:
            raise_for_status(response, f"CDSE {what}")
        except HttpError as exc:
            raise SubscriptionError(str(exc)) from None


def _detail(response: requests.Response) -> str:
    return "CDSE said: " + (response.text.strip().replace("\n", " ")[:300] or response.reason or "nothing")
