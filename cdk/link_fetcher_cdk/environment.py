"""Which run-time `Settings` reach which function: the one place every Settings field is classified.

A field is either
- read by deployed functions: listed under each function that reads it in FUNCTION_SETTINGS, and deployed to it
  from the `.env` the stack is synthesized with (or the environment), as the variable pydantic-settings reads;
- set by the stack from a resource it creates (STACK_SETTINGS: the database secret, the queue, the bucket…);
- or local-only (LOCAL_ONLY, with the reason no function gets it).

`tests/test_cdk_environment.py` fails while a Settings field is in none of these (or in two), so a new setting
is classified here when it is added.
"""

from __future__ import annotations

from enum import Enum
from pathlib import PurePath

from pydantic import SecretStr

from link_fetcher.settings import Settings

# What each part of the code reads, grouped so a function's list says what it does.
_CRITERIA = ("platforms", "product_type", "max_acquisition_age_days")
_RELAY = ("relay_batch_size", "relay_max_attempts", "relay_workers")
_CDSE_SEARCH = ("cdse_catalogue_url", "cdse_download_url", "cdse_page_size")
# Whose notifications are ours, and how long a deletion of a product never recorded is remembered (SPEC §3, §9).
_NOTIFICATIONS = ("subscription_ids", "deletion_memory_days")

# Settings fields each function reads, by its folder under lambdas/.
FUNCTION_SETTINGS: dict[str, tuple[str, ...]] = {
    "migrate": (),
    "date_generator": ("platforms", "unfinished_days_window"),
    "link_fetcher": (*_CRITERIA, *_CDSE_SEARCH, *_RELAY, "reprocessed_policy", "deletion_memory_days"),
    "link_subscription": (*_CRITERIA, "cdse_download_url", *_RELAY, "reprocessed_policy", *_NOTIFICATIONS),
    "relay": _RELAY,
    "downloader": ("cdse_download_url", "cdse_identity_url", "download_concurrency", "delete_downloaded_on_deletion"),
    "reconcile": ("reconcile_requeue_after_hours",),
    "subscription_puller": (
        *_CRITERIA,
        "cdse_catalogue_url",
        "cdse_download_url",
        "cdse_identity_url",
        *_RELAY,
        "reprocessed_policy",
        "pull_subscription_id",
        *_NOTIFICATIONS,
    ),
    "stac_fetcher": ("stac_page_size", "stac_http_attempts", "stac_keep_unknown_cloud", *_RELAY),
}

# Set by the stack (stack.py) from the resources it creates, never from `.env`.
STACK_SETTINGS = frozenset(
    {
        "database_url",  # DATABASE_SECRET_ARN instead: the generated RDS secret
        "database_secret_arn",
        "cdse_username",  # CDSE_SECRET_ARN instead: the CdseAccount secret
        "cdse_password",
        "cdse_secret_arn",
        "subscription_username",  # SUBSCRIPTION_SECRET_ARN instead: the generated push credentials
        "subscription_password",
        "subscription_secret_arn",
        "to_download_queue_url",  # the stack's To Download queue
        "upload_bucket",  # the stack's products bucket
        "stac_watches_file",  # the watches file packaged with stac_fetcher when DEPLOY_STAC_WATCHES is set
    }
)

# Read only by the CLI and local servers: no deployed function gets them.
LOCAL_ONLY: dict[str, str] = {
    "embedded_db_dir": "the CLI's embedded PostgreSQL; the functions use Aurora",
    "download_dir": "downloads without a bucket; the deployed downloader writes to the stack's bucket",
    "allowed_tiles_file": "a path on this machine; the functions read the HLS list packaged in the core layer",
    "redis_url": "the stack delivers to its SQS queue and creates no Redis for a stream sink",
    "redis_stream": "the Redis sink is not deployed (redis_url)",
    "redis_stream_maxlen": "the Redis sink is not deployed (redis_url)",
    "gateway_api_keys": "the stream gateway (`link-fetcher gateway`) is not deployed",
    "gateway_streams": "the stream gateway is not deployed",
    "gateway_max_entry_bytes": "the stream gateway is not deployed",
    "gateway_max_count": "the stream gateway is not deployed",
    "gateway_max_block_ms": "the stream gateway is not deployed",
    "gateway_max_connections_per_key": "the stream gateway is not deployed",
    "gateway_send_queue": "the stream gateway is not deployed",
    "gateway_key_entries_per_second": "the stream gateway is not deployed",
    "gateway_graphql_max_cost": "the stream gateway is not deployed",
    "gateway_graphql_concurrency_per_key": "the stream gateway is not deployed",
    "gateway_max_pending": "the stream gateway is not deployed",
    "freshness_slo_seconds": "no function reads it: the stack makes it the freshness alarms' threshold",
    "push_request_timeout_seconds": "`link-fetcher serve` only; API Gateway bounds the deployed endpoint's requests",
}


def variable_name(field: str) -> str:
    """The environment variable pydantic-settings reads `field` from (Settings has no prefix or aliases)."""
    return field.upper()


def variable_value(value: object) -> str:
    """`value` written the way Settings reads it back from the environment."""
    if isinstance(value, SecretStr):
        raise TypeError("a secret is never deployed in plain text: give the function a Secrets Manager ARN")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(variable_value(item) for item in value)
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, str | int | float | PurePath):
        return str(value)
    raise TypeError(f"no environment form for {type(value).__name__}")


def function_environment(function: str, settings: Settings) -> dict[str, str]:
    """The variables `function` gets from `settings`: each field it reads that has a value."""
    return {
        variable_name(field): variable_value(value)
        for field in FUNCTION_SETTINGS[function]
        if (value := getattr(settings, field)) is not None
    }
