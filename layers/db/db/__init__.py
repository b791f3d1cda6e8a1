"""link-fetcher database layer: models, migrations, engine, once-only recording and the delivery outbox.

The migrations (`db.migrate`: upgrade_head, downgrade_base, current_revision) are imported from there, not here:
Alembic costs a function's cold start a few hundred milliseconds, and only the migrate function and the CLI run it.
"""

from db.deletions import DeletionOutcome, DeletionRecord, record_deletions
from db.engine import DatabaseUnavailable, describe_url, get_engine, reset_engines
from db.models import (
    Base,
    DeletionCount,
    DeliveryEvent,
    DeliveryStatus,
    Granule,
    GranuleCount,
    Outbox,
    Source,
    Status,
)
from db.outbox import (
    UNASSIGNED_SINK,
    ClaimedDelivery,
    DeliveryOutcome,
    assign_unbound,
    count_by_status,
    end_leases,
    lease_pending,
    lease_token,
    list_deliveries,
    mark_outcomes,
    oldest_pending_age,
    release_leases,
    requeue,
    retry_failed,
)
from db.reading import GranuleRow, load_granules
from db.recording import REPROCESSED_POLICIES, GranuleRecord, record_granules

__all__ = [
    "REPROCESSED_POLICIES",
    "UNASSIGNED_SINK",
    "Base",
    "ClaimedDelivery",
    "DatabaseUnavailable",
    "DeletionCount",
    "DeletionOutcome",
    "DeletionRecord",
    "DeliveryEvent",
    "DeliveryOutcome",
    "DeliveryStatus",
    "Granule",
    "GranuleCount",
    "GranuleRecord",
    "GranuleRow",
    "Outbox",
    "Source",
    "Status",
    "assign_unbound",
    "count_by_status",
    "describe_url",
    "end_leases",
    "get_engine",
    "lease_pending",
    "lease_token",
    "list_deliveries",
    "load_granules",
    "mark_outcomes",
    "oldest_pending_age",
    "record_deletions",
    "record_granules",
    "release_leases",
    "requeue",
    "reset_engines",
    "retry_failed",
]
