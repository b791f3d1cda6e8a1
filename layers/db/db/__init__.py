"""link-fetcher database layer: models, migrations, engine, once-only recording and the delivery outbox.

The migrations (`db.migrate`: upgrade_head, downgrade_base, current_revision) are imported from there, not here:
importing Alembic lengthens a function's cold start, and only the migrate function and the CLI run it.
"""

from db.deletions import DeletionOutcome, DeletionRecord, record_deletions
from db.engine import DatabaseUnavailable, describe_url, get_engine, reset_engines
from db.models import (
    DeliveryEvent,
    DeliveryStatus,
    Source,
    deletion_count_table,
    granule_count_table,
    granule_table,
    metadata,
    outbox_table,
    status_table,
)
from db.outbox import (
    UNASSIGNED_SINK,
    ClaimedDelivery,
    DeliveryOutcome,
    LeaseSession,
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
from db.reading import GranuleRow, MessageRow, load_granules
from db.recording import REPROCESSED_POLICIES, GranuleRecord, record_granules

__all__ = [
    "REPROCESSED_POLICIES",
    "UNASSIGNED_SINK",
    "ClaimedDelivery",
    "DatabaseUnavailable",
    "DeletionOutcome",
    "DeletionRecord",
    "DeliveryEvent",
    "DeliveryOutcome",
    "DeliveryStatus",
    "GranuleRecord",
    "GranuleRow",
    "LeaseSession",
    "MessageRow",
    "Source",
    "assign_unbound",
    "count_by_status",
    "deletion_count_table",
    "describe_url",
    "end_leases",
    "get_engine",
    "granule_count_table",
    "granule_table",
    "lease_pending",
    "lease_token",
    "list_deliveries",
    "load_granules",
    "mark_outcomes",
    "metadata",
    "oldest_pending_age",
    "outbox_table",
    "record_deletions",
    "record_granules",
    "release_leases",
    "requeue",
    "reset_engines",
    "retry_failed",
    "status_table",
]
