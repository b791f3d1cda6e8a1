"""The push source (SPEC §3): CDSE's subscription notifications, received by the Lambda or `link-fetcher serve`."""

from link_fetcher.push.endpoint import MAX_BODY_BYTES, PushEndpoint, Reply

__all__ = ["MAX_BODY_BYTES", "PushEndpoint", "Reply"]
