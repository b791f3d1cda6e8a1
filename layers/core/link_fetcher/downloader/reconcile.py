"""Reconciliation: the stored objects against the `granule` rows. Missing or wrong-size objects reset their
row and requeue it through the outbox; objects nobody recorded are reported as orphans (never deleted);
granules long recorded but still not downloaded are requeued."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Sequence

from sqlalchemy import Engine

from db import GranuleRow, requeue
from link_fetcher.downloader import objects, state
from link_fetcher.downloader.storage import Storage

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ReconcileReport:
    checked: int = 0  # downloaded rows whose objects were checked
    missing: list[str] = dataclasses.field(default_factory=list)  # granule ids, reset and requeued
    wrong_size: list[str] = dataclasses.field(default_factory=list)  # granule ids, reset and requeued
    stale: list[str] = dataclasses.field(default_factory=list)  # granule ids, requeued
    orphans: list[str] = dataclasses.field(default_factory=list)  # object keys, listed only
    unreadable: dict[str, str] = dataclasses.field(default_factory=dict)  # granule id: why its row cannot be read
    objects_seen: int = 0

    @property
    def consistent(self) -> bool:
        return not (self.missing or self.wrong_size or self.stale or self.orphans or self.unreadable)

    def as_dict(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "consistent": self.consistent}


def day_start(day: str) -> dt.datetime:
    """`YYYY-MM-DD` → that day's 00:00 UTC; ValueError otherwise."""
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), dt.UTC)


def reconcile(
    engine: Engine,
    storage: Storage,
    *,
    sink_names: Sequence[str],
    requeue_after: dt.timedelta,
    since: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> ReconcileReport:
    """Check granules first seen (and objects written) at or after `since`; everything when None."""
    report = ReconcileReport()
    now = now or dt.datetime.now(dt.UTC)
    with engine.connect() as reader:
        for rows, unreadable in state.downloaded_since(reader, since):
            report.unreadable.update(unreadable)
            _check_downloaded(engine, storage, rows, sink_names, report)
    with engine.begin() as conn:
        report.stale = state.stale_undownloaded(conn, now - requeue_after, since)
        requeue(conn, report.stale, sink_names)
    for page in storage.list_objects(since):
        report.objects_seen += len(page)
        keys = [obj.key for obj in page]
        folders = {key: objects.key_folder(key) for key in keys}
        with engine.connect() as conn:
            known_keys, stac_ids = state.known_objects(conn, keys, [f for f in folders.values() if f])
        report.orphans += [key for key in keys if key not in known_keys and folders[key] not in stac_ids]
    log.info("reconcile %s: %s", storage.describe(), report.as_dict())
    return report


def _check_downloaded(
    engine: Engine, storage: Storage, rows: list[GranuleRow], sink_names: Sequence[str], report: ReconcileReport
) -> None:
    expected = {row["id"]: objects.expected_objects(row) for row in rows}
    found = storage.sizes([obj.key for wanted in expected.values() for obj in wanted])
    missing, wrong_size = [], []
    for granule_id, wanted in expected.items():
        if any(obj.key not in found for obj in wanted):
            missing.append(granule_id)
        elif any(obj.size is not None and found[obj.key] != obj.size for obj in wanted):
            wrong_size.append(granule_id)
    report.checked += len(rows)
    if missing or wrong_size:
        with engine.begin() as conn:
            state.reset_downloads(conn, missing, "reconcile: stored object missing")
            state.reset_downloads(conn, wrong_size, "reconcile: stored object has the wrong size")
            requeue(conn, missing + wrong_size, sink_names)
        report.missing += missing
        report.wrong_size += wrong_size
