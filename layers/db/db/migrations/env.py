"""Alembic environment: the engine comes from db.migrate; upgrades are serialised by an advisory lock."""

from alembic import context
from sqlalchemy import text

from db.models import metadata

# Any constant: every link-fetcher process migrating the same database takes this lock.
MIGRATION_LOCK_KEY = 7_326_100_411


def run_migrations_online() -> None:
    engine = context.config.attributes["engine"]
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        try:
            context.configure(connection=connection, target_metadata=metadata, compare_type=True)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()


run_migrations_online()
