"""Deploy-time configuration, read from the environment and the repository's `.env` (listed in `.env.example`).

Deploy-only values use the `DEPLOY_` prefix; what the functions read at run time (platforms, product type, CDSE
URLs…) comes from the core `Settings`, so a `.env` that works locally configures the deployed stack the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from aws_cdk import aws_logs as logs
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from link_fetcher.settings import Settings, read_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = PROJECT_ROOT / ".env"
SCHEDULE_OFF = ("off", "none", "disabled")
# The retention periods CloudWatch Logs offers, in days.
_RETENTION_DAYS = dict(
    zip(
        (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653),
        list(logs.RetentionDays)[:-1],  # every member but INFINITE, in the same order
        strict=True,
    )
)


class DeployConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DEPLOY_", env_file=ENV_FILE, env_file_encoding="utf-8", env_ignore_empty=True, extra="ignore"
    )

    # Stack name and the prefix of named resources; deploy twice with two identifiers for two stacks.
    identifier: str = Field("link-fetcher", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,40}$")
    # EventBridge schedule expressions; "off" switches one off.
    poll_schedule: str | None = "cron(0 3 * * ? *)"
    relay_schedule: str | None = "rate(5 minutes)"
    reconcile_schedule: str | None = "rate(1 day)"
    stac_schedule: str | None = "rate(1 hour)"
    # How CDSE's notifications arrive: `push` deploys the endpoint (API Gateway + link_subscription); `pull`
    # deploys no endpoint and reads a PULL subscription (`subscriptions create --pull`) on PULL_SCHEDULE instead.
    subscription_mode: Literal["push", "pull"] = "push"
    pull_schedule: str = "rate(2 minutes)"
    # The STAC watches the STAC fetcher runs on its schedule (one rule each, event {"watch": name}).
    stac_watches: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Publication days each scheduled poll looks back over, and (day, platform) pairs fetched at once.
    lookback_days: int = Field(5, ge=1, le=60)
    map_concurrency: int = Field(4, ge=1, le=40)
    # What happens to the database and the bucket when the stack is destroyed.
    removal_policy: Literal["retain", "snapshot", "destroy"] = "retain"
    # Alarm notifications go to this address (confirm the subscription e-mail); empty: topic only.
    alarm_email: str | None = None
    log_retention_days: int = 30
    # Push endpoint throttling (requests per second, burst).
    api_rate_limit: float = Field(20, gt=0)
    api_burst_limit: int = Field(40, ge=1)
    # Aurora Serverless v2 capacity in ACUs (0 lets it pause when idle, at the price of a slow first connection).
    db_min_capacity: float = Field(0.5, ge=0)
    db_max_capacity: float = Field(2, ge=1)
    # NAT gateways for the functions' internet access (CDSE); 2 survives an AZ outage, 1 costs half.
    nat_gateways: int = Field(1, ge=1, le=2)

    @field_validator("poll_schedule", "relay_schedule", "reconcile_schedule", "stac_schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() in SCHEDULE_OFF:
            return None
        if not value.startswith(("rate(", "cron(")):
            raise ValueError(f"{value!r} is not an EventBridge schedule: use rate(...), cron(...) or off")
        return value.strip()

    @field_validator("stac_watches", mode="before")
    @classmethod
    def _split_watches(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in _RETENTION_DAYS:
            raise ValueError(f"CloudWatch Logs keeps logs for one of {sorted(_RETENTION_DAYS)} days, not {value}")
        return value

    @property
    def retention(self) -> logs.RetentionDays:
        return _RETENTION_DAYS[self.log_retention_days]


def load(env_file: Path | None = ENV_FILE) -> tuple[DeployConfig, Settings]:
    """The deploy configuration and the run-time settings handed to the functions, from one `.env`."""
    return DeployConfig(_env_file=env_file), read_settings(env_file)
