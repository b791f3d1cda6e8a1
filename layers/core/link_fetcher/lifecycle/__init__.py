"""Product lifecycle (SPEC §9): CDSE deletions (notifications and the DeletedProducts collection), PULL
subscriptions, and deleted / reprocessed counts."""
