"""CDSE push subscriptions (SPEC §3): the Subscriptions API client and `link-fetcher subscriptions …`."""
