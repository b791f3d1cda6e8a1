"""Settings from the environment (and a `.env` file locally). Names follow SPEC §6; `.env.example` lists them."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from link_fetcher import stream_names
from link_fetcher.mission import MISSION

if TYPE_CHECKING:
    from link_fetcher.credentials import CredentialSource

PACKAGED_TILES_FILE = Path(__file__).with_name("hls_allowed_tiles.txt")
KNOWN_PLATFORMS = MISSION.platforms

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Run-time settings. Each field is also classified for AWS in cdk/link_fetcher_cdk/environment.py: deployed to
    the functions that read it, set by the stack, or local-only (tests/test_cdk_environment.py fails until it is)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", env_ignore_empty=True, extra="ignore")

    # Database: DATABASE_URL, else (AWS) the RDS secret named by DATABASE_SECRET_ARN, else (CLI) embedded.
    database_url: str | None = None
    database_secret_arn: str | None = None
    embedded_db_dir: Path = Path(".pgdata")

    # CDSE endpoints and account.
    cdse_catalogue_url: str = "https://catalogue.dataspace.copernicus.eu"
    cdse_download_url: str = "https://download.dataspace.copernicus.eu"
    cdse_identity_url: str = "https://identity.dataspace.copernicus.eu"
    cdse_username: str | None = None
    cdse_password: SecretStr | None = None
    cdse_secret_arn: str | None = None  # AWS: {"username", "password"} secret, used instead of the two above
    cdse_page_size: int = Field(1000, ge=1, le=1000)

    # What we want.
    platforms: CommaList = Field(default_factory=lambda: list(KNOWN_PLATFORMS))
    product_type: str = MISSION.default_product_type
    max_acquisition_age_days: int = Field(30, ge=1)
    allowed_tiles_file: Path = PACKAGED_TILES_FILE

    # Delivery sinks; none configured leaves deliveries pending in the outbox.
    to_download_queue_url: str | None = None
    redis_url: str | None = None
    redis_stream: str = "to-download"
    # Approximate bound on the stream length (XADD MAXLEN ~); 0 keeps every entry.
    redis_stream_maxlen: int = Field(100_000, ge=0)
    relay_batch_size: int = Field(10, ge=1, le=10)
    relay_max_attempts: int = Field(10, ge=1)
    # Batches in flight per sink: a queue across a network answers in milliseconds, and one sender waits through
    # each call, so several workers overlap those waits (docs/benchmarks.md: per_granule, 1 and 4 workers).
    # A crash repeats at most one batch per worker (SPEC §5's bound is per worker); 1 restores one batch in all.
    relay_workers: int = Field(4, ge=1, le=16)
    # Freshness objective: the stack alarms when a source's p95 (publication → first delivery) exceeds it;
    # `status` marks the sources above it.
    freshness_slo_seconds: int = Field(3600, ge=1)

    # Lifecycle (SPEC §9): what a reprocessing of an earlier granule gets: deliver (its message carries
    # `supersedes`), skip (recorded, not delivered) or replace (delivered; the earlier one deleted and announced).
    reprocessed_policy: Literal["deliver", "skip", "replace"] = "deliver"
    # Scheduled polls offer again, besides their lookback days, the (day, platform)s and deletion days of this many
    # days back whose fetch failed after its retries (left unfinished); 0 offers only the lookback days.
    unfinished_days_window: int = Field(30, ge=0, le=366)
    # PULL subscription to read (`subscriptions pull`, lambdas/subscription_puller); unset: the account's running one.
    pull_subscription_id: str | None = None
    # Deletions of products never recorded are remembered this many days (a later `created` is then not delivered).
    deletion_memory_days: int = Field(90, ge=1)
    # The subscriptions whose notifications are ours (the ids `subscriptions create` prints, comma-separated);
    # a notification of any other `SubscriptionId` is counted and ignored. Unset: every subscription's.
    subscription_ids: CommaList = Field(default_factory=list)

    # Push endpoint credentials: a Secrets Manager secret ({"username", "password"}) in AWS, else these.
    subscription_username: str | None = None
    subscription_password: SecretStr | None = None
    subscription_secret_arn: str | None = None
    # `serve`: a client that has not sent its whole request (headers and body) within this many seconds is
    # answered 408 and disconnected, so slow clients cannot hold connections.
    push_request_timeout_seconds: float = Field(30, gt=0)

    # Downloader.
    upload_bucket: str | None = None
    download_dir: Path = Path("./downloads")
    download_concurrency: int = Field(4, ge=1)
    # A granule CDSE deleted is never downloaded; true also removes what was stored of it before.
    delete_downloaded_on_deletion: bool = False
    # `reconcile` requeues granules recorded this long ago and still not downloaded.
    reconcile_requeue_after_hours: float = Field(24, gt=0)

    # STAC source (`stac-fetch`, lambdas/stac_fetcher): watches file, items per search page, tries per request.
    stac_watches_file: Path = Path("watches.toml")
    stac_page_size: int = Field(100, ge=1, le=10000)
    stac_http_attempts: int = Field(6, ge=1)
    # An item without eo:cloud_cover under a cloud limit: kept (true) or dropped as "unknown cloud cover".
    stac_keep_unknown_cloud: bool = True

    # Stream gateway.
    gateway_api_keys: SecretStr | None = None
    gateway_streams: str = "*"
    gateway_max_entry_bytes: int = Field(65_536, ge=1)
    gateway_max_count: int = Field(1000, ge=1)
    gateway_max_block_ms: int = Field(30_000, ge=0)
    gateway_max_connections_per_key: int = Field(16, ge=1)
    gateway_send_queue: int = Field(1000, ge=1)
    # Fair keys: entries each key may be handed per second (a bucket holding at least GATEWAY_MAX_COUNT), the
    # entries one GraphQL query may ask for in all (aliases x count, refused before it runs), and the GraphQL
    # queries a key may run at once.
    gateway_key_entries_per_second: float = Field(1000, gt=0)
    gateway_graphql_max_cost: int = Field(100, ge=1)
    gateway_graphql_concurrency_per_key: int = Field(2, ge=1)
    # Entries a group consumer may hold unacknowledged: reads hand it no new ones until it acks.
    gateway_max_pending: int = Field(1000, ge=1)

    @property
    def database_credentials(self) -> CredentialSource:
        from link_fetcher.credentials import CredentialSource  # Secrets Manager's client: only a process signing in

        return CredentialSource("database", "DATABASE", self.database_secret_arn)

    @property
    def cdse_credentials(self) -> CredentialSource:
        from link_fetcher.credentials import CredentialSource  # Secrets Manager's client: only a process signing in

        return CredentialSource("CDSE account", "CDSE", self.cdse_secret_arn, self.cdse_username, self.cdse_password)

    @property
    def subscription_credentials(self) -> CredentialSource:
        from link_fetcher.credentials import CredentialSource  # Secrets Manager's client: only a process signing in

        return CredentialSource(
            "push endpoint", "SUBSCRIPTION", self.subscription_secret_arn, self.subscription_username,
            self.subscription_password,
        )  # fmt: skip

    @field_validator("platforms", mode="before")
    @classmethod
    def _parse_platforms(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("subscription_ids", mode="before")
    @classmethod
    def _parse_subscription_ids(cls, value: object) -> object:
        parts = _split_commas(value)
        return [part.lower() for part in parts] if isinstance(parts, list) else parts  # Ids compare in lower case

    @field_validator("redis_stream")
    @classmethod
    def _stream_name(cls, value: str) -> str:
        """A stream the gateway can serve (SPEC §8), and not one of the keys the relay keeps beside it."""
        if stream_names.is_reserved(stream_names.check(value)):
            raise ValueError(f"{value!r} is a name link-fetcher reserves for its own keys")
        return value

    @field_validator("platforms")
    @classmethod
    def _known_platforms(cls, value: list[str]) -> list[str]:
        return MISSION.known_platforms(value)


@functools.cache
def get_settings() -> Settings:
    """Settings read once per process (a Lambda container keeps them across invocations)."""
    return Settings()
