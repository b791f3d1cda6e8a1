"""Settings from the environment (and a `.env` file locally), grouped by concern: `settings.cdse.page_size` is
CDSE_PAGE_SIZE. Names follow SPEC §6; `.env.example` lists them.

Each group reads its own variables; `Settings` holds one of each. Each field is deployed to the functions that
declare its group (`SETTINGS_READ` in lambdas/<name>/handler.py; cdk/link_fetcher_cdk/environment.py), unless it
is marked `SetByStack` (the stack gives it from a resource it creates) or `LocalOnly` (no function gets it)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from link_fetcher import stream_names
from link_fetcher.mission import MISSION

if TYPE_CHECKING:
    from link_fetcher.credentials import CredentialSource

PACKAGED_TILES_FILE = Path(__file__).with_name("hls_allowed_tiles.txt")
KNOWN_PLATFORMS = MISSION.platforms

CommaList = Annotated[list[str], NoDecode]


@dataclasses.dataclass(frozen=True, slots=True)
class SetByStack:
    """A field the stack sets from a resource it creates (the queue, the bucket, a secret), never from `.env`."""

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class LocalOnly:
    """A field read only by the CLI and local servers: no deployed function gets it."""

    reason: str


_GATEWAY = LocalOnly("the stream gateway (`link-fetcher gateway`) is not deployed")
_REDIS = LocalOnly("the stack delivers to its SQS queue and creates no Redis for a stream sink")


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _config(prefix: str = "") -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix, env_file=".env", env_file_encoding="utf-8", env_ignore_empty=True, extra="ignore",
        validate_by_name=True,
    )  # fmt: skip


def _variable(name: str) -> AliasChoices:
    """A field read from `name`, outside its group's prefix (and still given by its field name)."""
    return AliasChoices(name)


class DatabaseSettings(BaseSettings):
    """DATABASE_URL, else (AWS) the RDS secret named by DATABASE_SECRET_ARN, else (CLI) an embedded server."""

    model_config = _config("DATABASE_")

    url: Annotated[str | None, SetByStack("DATABASE_SECRET_ARN instead: the generated RDS secret")] = None
    secret_arn: Annotated[str | None, SetByStack("the generated RDS secret")] = None
    embedded_db_dir: Annotated[Path, LocalOnly("the CLI's embedded PostgreSQL; the functions use Aurora")] = Field(
        Path(".pgdata"), validation_alias=_variable("EMBEDDED_DB_DIR")
    )

    @property
    def credentials(self) -> CredentialSource:
        from link_fetcher.credentials import CredentialSource  # Secrets Manager's client: only a process signing in

        return CredentialSource("database", "DATABASE", self.secret_arn)


class CdseSettings(BaseSettings):
    """CDSE's endpoints and the account (CDSE_SECRET_ARN's {"username", "password"} in AWS, else the two)."""

    model_config = _config("CDSE_")

    catalogue_url: str = "https://catalogue.dataspace.copernicus.eu"
    download_url: str = "https://download.dataspace.copernicus.eu"
    identity_url: str = "https://identity.dataspace.copernicus.eu"
    username: Annotated[str | None, SetByStack("CDSE_SECRET_ARN instead: the CdseAccount secret")] = None
    password: Annotated[SecretStr | None, SetByStack("CDSE_SECRET_ARN instead: the CdseAccount secret")] = None
    secret_arn: Annotated[str | None, SetByStack("the CdseAccount secret")] = None
    page_size: int = Field(1000, ge=1, le=1000)

    @property
    def credentials(self) -> CredentialSource:
        from link_fetcher.credentials import CredentialSource  # Secrets Manager's client: only a process signing in

        return CredentialSource("CDSE account", "CDSE", self.secret_arn, self.username, self.password)


class CriteriaSettings(BaseSettings):
    """What we want: platforms, product type, how old, which tiles."""

    model_config = _config()

    platforms: CommaList = Field(default_factory=lambda: list(KNOWN_PLATFORMS))
    product_type: str = MISSION.default_product_type
    max_acquisition_age_days: int = Field(30, ge=1)
    allowed_tiles_file: Annotated[
        Path, LocalOnly("a path on this machine; the functions read the HLS list packaged in the core layer")
    ] = PACKAGED_TILES_FILE

    @field_validator("platforms", mode="before")
    @classmethod
    def _parse_platforms(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("platforms")
    @classmethod
    def _known_platforms(cls, value: list[str]) -> list[str]:
        return MISSION.known_platforms(value)


class SinkSettings(BaseSettings):
    """Delivery sinks; none configured leaves deliveries pending in the outbox."""

    model_config = _config()

    to_download_queue_url: Annotated[str | None, SetByStack("the stack's To Download queue")] = None
    redis_url: Annotated[str | None, _REDIS] = None
    redis_stream: Annotated[str, _REDIS] = "to-download"
    # Approximate bound on the stream length (XADD MAXLEN ~); 0 keeps every entry.
    redis_stream_maxlen: Annotated[int, _REDIS] = Field(100_000, ge=0)

    @field_validator("redis_stream")
    @classmethod
    def _stream_name(cls, value: str) -> str:
        """A stream the gateway can serve (SPEC §8), and not one of the keys the relay keeps beside it."""
        if stream_names.is_reserved(stream_names.check(value)):
            raise ValueError(f"{value!r} is a name link-fetcher reserves for its own keys")
        return value


class RelaySettings(BaseSettings):
    """How the relay delivers the outbox, and how soon deliveries should arrive."""

    model_config = _config("RELAY_")

    batch_size: int = Field(10, ge=1, le=10)
    max_attempts: int = Field(10, ge=1)
    # Batches in flight per sink: a queue across a network answers in milliseconds, and one sender waits through
    # each call, so several workers overlap those waits (docs/benchmarks.md: per_granule, 1 and 4 workers).
    # A crash repeats at most one batch per worker (SPEC §5's bound is per worker); 1 restores one batch in all.
    workers: int = Field(4, ge=1, le=16)
    # Freshness objective: the stack alarms when a source's p95 (publication → first delivery) exceeds it;
    # `status` marks the sources above it.
    freshness_slo_seconds: Annotated[
        int, LocalOnly("no function reads it: the stack makes it the freshness alarms' threshold")
    ] = Field(3600, ge=1, validation_alias=_variable("FRESHNESS_SLO_SECONDS"))


class LifecycleSettings(BaseSettings):
    """Reprocessings, deletions and days left unfinished (SPEC §9)."""

    model_config = _config()

    # What a reprocessing of an earlier granule gets: deliver (its message carries `supersedes`), skip (recorded,
    # not delivered) or replace (delivered; the earlier one deleted and announced).
    reprocessed_policy: Literal["deliver", "skip", "replace"] = "deliver"
    # Scheduled polls offer again, besides their lookback days, the (day, platform)s and deletion days of this many
    # days back whose fetch failed after its retries (left unfinished); 0 offers only the lookback days.
    unfinished_days_window: int = Field(30, ge=0, le=366)
    # Deletions of products never recorded are remembered this many days (a later `created` is then not delivered).
    deletion_memory_days: int = Field(90, ge=1)


class SubscriptionSettings(BaseSettings):
    """CDSE subscriptions: whose notifications are ours, the PULL one to read, the push endpoint's credentials."""

    model_config = _config("SUBSCRIPTION_")

    # The ids `subscriptions create` prints, comma-separated; a notification of any other `SubscriptionId` is
    # counted and ignored. Unset: every subscription's.
    ids: CommaList = Field(default_factory=list)
    # PULL subscription to read (`subscriptions pull`, lambdas/subscription_puller); unset: the account's running one.
    pull_subscription_id: str | None = Field(None, validation_alias=_variable("PULL_SUBSCRIPTION_ID"))
    # Push endpoint credentials: a Secrets Manager secret ({"username", "password"}) in AWS, else these.
    username: Annotated[str | None, SetByStack("SUBSCRIPTION_SECRET_ARN instead: the push credentials")] = None
    password: Annotated[SecretStr | None, SetByStack("SUBSCRIPTION_SECRET_ARN instead: the push credentials")] = None
    secret_arn: Annotated[str | None, SetByStack("the generated push credentials")] = None
    # `serve`: a client that has not sent its whole request (headers and body) within this many seconds is
    # answered 408 and disconnected, so slow clients cannot hold connections.
    push_request_timeout_seconds: Annotated[
        float, LocalOnly("`link-fetcher serve` only; API Gateway bounds the deployed endpoint's requests")
    ] = Field(30, gt=0, validation_alias=_variable("PUSH_REQUEST_TIMEOUT_SECONDS"))

    @field_validator("ids", mode="before")
    @classmethod
    def _parse_ids(cls, value: object) -> object:
        parts = _split_commas(value)
        return [part.lower() for part in parts] if isinstance(parts, list) else parts  # Ids compare in lower case

    @property
    def credentials(self) -> CredentialSource:
        from link_fetcher.credentials import CredentialSource  # Secrets Manager's client: only a process signing in

        return CredentialSource("push endpoint", "SUBSCRIPTION", self.secret_arn, self.username, self.password)


class DownloaderSettings(BaseSettings):
    """The downloader and `reconcile`."""

    model_config = _config()

    upload_bucket: Annotated[str | None, SetByStack("the stack's products bucket")] = None
    download_dir: Annotated[
        Path, LocalOnly("downloads without a bucket; the deployed downloader writes to the stack's bucket")
    ] = Path("./downloads")
    download_concurrency: int = Field(4, ge=1)
    # A granule CDSE deleted is never downloaded; true also removes what was stored of it before.
    delete_downloaded_on_deletion: bool = False
    # `reconcile` requeues granules recorded this long ago and still not downloaded.
    reconcile_requeue_after_hours: float = Field(24, gt=0)


class StacSettings(BaseSettings):
    """STAC source (`stac-fetch`, lambdas/stac_fetcher): watches file, items per search page, tries per request."""

    model_config = _config("STAC_")

    watches_file: Annotated[
        Path, SetByStack("the watches file packaged with stac_fetcher when DEPLOY_STAC_WATCHES is set")
    ] = Path("watches.toml")
    page_size: int = Field(100, ge=1, le=10000)
    http_attempts: int = Field(6, ge=1)
    # An item without eo:cloud_cover under a cloud limit: kept (true) or dropped as "unknown cloud cover".
    keep_unknown_cloud: bool = True


class GatewaySettings(BaseSettings):
    """The stream gateway (`link-fetcher gateway`)."""

    model_config = _config("GATEWAY_")

    api_keys: Annotated[SecretStr | None, _GATEWAY] = None
    streams: Annotated[str, _GATEWAY] = "*"
    max_entry_bytes: Annotated[int, _GATEWAY] = Field(65_536, ge=1)
    max_count: Annotated[int, _GATEWAY] = Field(1000, ge=1)
    max_block_ms: Annotated[int, _GATEWAY] = Field(30_000, ge=0)
    max_connections_per_key: Annotated[int, _GATEWAY] = Field(16, ge=1)
    send_queue: Annotated[int, _GATEWAY] = Field(1000, ge=1)
    # Fair keys: entries each key may be handed per second (a bucket holding at least GATEWAY_MAX_COUNT), the
    # entries one GraphQL query may ask for in all (aliases x count, refused before it runs), and the GraphQL
    # queries a key may run at once.
    key_entries_per_second: Annotated[float, _GATEWAY] = Field(1000, gt=0)
    graphql_max_cost: Annotated[int, _GATEWAY] = Field(100, ge=1)
    graphql_concurrency_per_key: Annotated[int, _GATEWAY] = Field(2, ge=1)
    # Entries a group consumer may hold unacknowledged: reads hand it no new ones until it acks.
    max_pending: Annotated[int, _GATEWAY] = Field(1000, ge=1)


class Settings(BaseModel):
    """Run-time settings, one group per concern; `Settings()` reads every group from the environment and `.env`."""

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    cdse: CdseSettings = Field(default_factory=CdseSettings)
    criteria: CriteriaSettings = Field(default_factory=CriteriaSettings)
    sinks: SinkSettings = Field(default_factory=SinkSettings)
    relay: RelaySettings = Field(default_factory=RelaySettings)
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    subscription: SubscriptionSettings = Field(default_factory=SubscriptionSettings)
    downloader: DownloaderSettings = Field(default_factory=DownloaderSettings)
    stac: StacSettings = Field(default_factory=StacSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)


SettingsGroup = type[BaseSettings]


def groups() -> dict[str, SettingsGroup]:
    """Each group's class by its name in Settings (`cdse` -> CdseSettings)."""
    found: dict[str, SettingsGroup] = {}
    for name, field in Settings.model_fields.items():
        assert isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings)
        found[name] = field.annotation
    return found


def variable_name(group: SettingsGroup, field: str) -> str:
    """The environment variable `field` of `group` is read from (SPEC §6)."""
    alias = group.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"{group.model_config.get('env_prefix', '')}{field}".upper()


def variables(group: SettingsGroup) -> Iterator[tuple[str, str]]:
    """(field, variable) of each field of `group`."""
    for field in group.model_fields:
        yield field, variable_name(group, field)


def not_deployed(group: SettingsGroup, field: str) -> list[SetByStack | LocalOnly]:
    """The marks saying why no function gets `field` of `group` from `.env` (none: it is deployed)."""
    return [mark for mark in group.model_fields[field].metadata if isinstance(mark, SetByStack | LocalOnly)]


def read_settings(env_file: Path | str | None = ".env", **values: object) -> Settings:
    """Every group read from the environment and `env_file` (None: no file), `values` overriding any setting by
    its variable's name in lower case (`cdse_page_size=250`). TypeError for a name no group reads."""
    given: dict[str, dict[str, Any]] = {name: {} for name in Settings.model_fields}
    by_variable = {
        variable.lower(): (name, field) for name, group in groups().items() for field, variable in variables(group)
    }
    for key, value in values.items():
        if key not in by_variable:
            raise TypeError(f"no setting is read from {key.upper()}")
        name, field = by_variable[key]
        given[name][field] = value
    made: Mapping[str, BaseSettings] = {
        name: group(_env_file=env_file, **given[name]) for name, group in groups().items()
    }
    return Settings.model_validate(made)


@functools.cache
def get_settings() -> Settings:
    """Settings read once per process (a Lambda container keeps them across invocations)."""
    return Settings()
