"""Watches: named areas to follow on STAC APIs, from a TOML file (`watches.toml` at the repo root is an example).

[[watch]]
name = "alps"
api = "https://earth-search.aws.element84.com/v1"
collections = ["sentinel-2-l2a"]
bbox = [5.9, 45.8, 10.5, 47.8]      # or: aoi = "aoi/alps.geojson" (relative to this file)
bands = ["red", "green", "nir"]     # omitted: every asset
max_cloud = 40                      # omitted: any cloud cover
lookback = "2d"                     # each run covers [now - lookback, now)
window = "1d"                       # searched a window at a time
own_deliveries = false              # true: its items are delivered on their own (with their assets) even when
                                    # another source brought the same product (SPEC §11)
"""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from link_fetcher.stac.area import Area, load_geojson, parse_bbox
from link_fetcher.stac.fetching import StacQuery
from link_fetcher.stac.timerange import TimeRange, lookback_range, parse_duration


class WatchConfigError(ValueError):
    """The watches file is missing, not TOML, or describes a watch badly; one line."""


class Watch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    api: str = Field(pattern=r"^https?://")
    collections: tuple[str, ...] = Field(min_length=1)
    bbox: tuple[float, float, float, float] | None = None
    aoi: Path | None = None
    bands: tuple[str, ...] = ()
    max_cloud: float | None = Field(None, ge=0, le=100)
    lookback: str = "2d"
    window: str = "1d"
    own_deliveries: bool = False

    @field_validator("lookback", "window")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @model_validator(mode="after")
    def _one_area(self) -> Watch:
        if (self.bbox is None) == (self.aoi is None):
            raise ValueError("give exactly one of bbox and aoi")
        return self

    def area(self, base_dir: Path) -> Area:
        if self.bbox is not None:
            return parse_bbox(self.bbox)
        assert self.aoi is not None
        return load_geojson(self.aoi if self.aoi.is_absolute() else base_dir / self.aoi)

    def query(self, base_dir: Path, *, now: dt.datetime, time_range: TimeRange | None = None) -> StacQuery:
        """The search of one run: `time_range` when given, else the lookback up to `now`."""
        return StacQuery(
            api_url=self.api,
            collections=self.collections,
            area=self.area(base_dir),
            time_range=time_range or lookback_range(parse_duration(self.lookback), now=now),
            window=parse_duration(self.window),
            bands=self.bands,
            max_cloud=self.max_cloud,
            own_deliveries=self.own_deliveries,
        )


def _problem(error: ErrorDetails) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "watch"
    return f"{where}: {error['msg']}"


def parse_watches(document: dict[str, Any], source: str) -> dict[str, Watch]:
    entries = document.get("watch")
    if not isinstance(entries, list) or not entries:
        raise WatchConfigError(f"{source}: no [[watch]] entries")
    watches: dict[str, Watch] = {}
    for index, entry in enumerate(entries):
        label = entry.get("name") if isinstance(entry, dict) and entry.get("name") else f"#{index + 1}"
        try:
            watch = Watch.model_validate(entry)
        except ValidationError as exc:
            problems = "; ".join(_problem(error) for error in exc.errors())
            raise WatchConfigError(f"{source}: watch {label}: {problems}") from None
        if watch.name in watches:
            raise WatchConfigError(f"{source}: watch {watch.name!r} is defined twice")
        watches[watch.name] = watch
    return watches


def load_watches(path: Path) -> dict[str, Watch]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WatchConfigError(f"cannot read watches file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise WatchConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse_watches(document, str(path))


def select_watches(watches: dict[str, Watch], names: tuple[str, ...], *, every: bool, source: str) -> list[Watch]:
    if every:
        return list(watches.values())
    unknown = [name for name in names if name not in watches]
    if unknown:
        raise WatchConfigError(f"unknown watch {', '.join(unknown)} in {source} (it has: {', '.join(sorted(watches))})")
    return [watches[name] for name in names]
